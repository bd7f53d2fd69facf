"""Prefix-RFT fits on the toy config with the vLLM CPU engine in bf16 beside the float32
trainer: the weight sync is tested for its effect. With `VLLMWeightSync` the exact weight
check passes before every step although the engine's log-probs differ from the trainer's
by bf16 noise (logged: mean, p99, max); with every push undone the check stops the run at
step 1, the first step after an optimiser step the engine did not get, naming the tensor."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from prefix_rft_pl.engines.checks import StaleWeightsError

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
pytest.importorskip("vllm")

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "toy" / "prefix_rft.yaml"
# bf16 noise is far above what a log-prob tripwire able to see a float32 engine one step behind
# would allow (float32 vs float32 agree to ~1e-5; the previous max-abs check here stopped at 1e-3)
OLD_TRIPWIRE = 1e-3
ENGINE = {"dtype": "bfloat16", "max_model_len": 512, "kv_cache_gib": 1, "enforce_eager": True}


def override_config(tmp_path: Path, model_dir, task_files, with_sync: bool) -> Path:
    """The toy config with the vLLM engine, 3 steps, small batches and logs under tmp_path.

    The policy is untrained, so ordinary rollouts all score 0. Prefixes of the whole
    demonstration but its last token make the hybrid rollouts carry the right answer:
    advantages, hence updates, are non-zero and a stale engine shows.
    """
    callbacks = [{"class_path": "callbacks.PrefixSchedule",
                  "init_args": {"kind": "constant", "low_start": 1.0, "high": 1.0}}]
    # with_sync: no VLLMWeightSync listed, as in an overlay that replaced the list: the module adds it itself
    if not with_sync:  # listed, so that the undo runs after every push: the engine stays on the initial weights
        callbacks += [{"class_path": "callbacks.VLLMWeightSync"},
                      {"class_path": "tests.integration.rank_faults.StaleEngineOnRank", "init_args": {"rank": 0}}]
    override = {
        "trainer": {
            "max_steps": 3, "limit_val_batches": 0, "enable_checkpointing": False, "enable_progress_bar": False,
            "default_root_dir": str(tmp_path), "callbacks": callbacks,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}},
        },
        "model": {"policy": str(model_dir), "engine": {"kind": "vllm", **ENGINE},
                  "rollout": {"group_size": 4}, "reward": {"workers": 1}},
        "data": {"init_args": {"train_files": str(task_files["train"]), "val_files": str(task_files["heldout_easy"]),
                               "batch_size": 4}},
    }
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(override))))
    return path


def fit(tmp_path, model_dir, task_files, with_sync: bool):
    from prefix_rft_pl.cli import PrefixRFTCLI
    from prefix_rft_pl.module import PrefixRFTModule

    override = override_config(tmp_path, model_dir, task_files, with_sync)
    args = ["--config", str(CONFIG), "--config", str(override)]
    cli = PrefixRFTCLI(PrefixRFTModule, datamodule_class=None, subclass_mode_data=True, save_config_callback=None,
                       args=args, run=False)
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        if cli.model.engine is not None:
            cli.model.engine.close()  # the next test starts its own engine in this process
    return cli.trainer


def logged_rows(trainer) -> list[dict[str, str]]:
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        return list(csv.DictReader(f))


def column(rows, key: str) -> list[float]:
    return [float(row[key]) for row in rows if row.get(key)]


def test_bf16_engine_beside_float32_trainer_with_weight_sync_does_not_trip(tmp_path, tiny_model_dir,
                                                                           toy_task_files):
    trainer = fit(tmp_path, tiny_model_dir, toy_task_files, with_sync=True)
    assert trainer.global_step == 3
    rows = logged_rows(trainer)
    assert max(column(rows, "train/grad_norm")) > 0  # the policy did move
    assert column(rows, "rollout/weights_verified") == [17.0] * 3  # every step; see test_vllm_fingerprint.py
    means, p99s, maxes = (column(rows, f"rollout/logprob_diff_{k}") for k in ("mean", "p99", "max"))
    assert len(means) == len(p99s) == len(maxes) == 3
    assert all(0 < m <= p <= x for m, p, x in zip(means, p99s, maxes))
    assert max(maxes) > OLD_TRIPWIRE  # bf16 noise: the old log-prob tripwire would have stopped this healthy run
    syncs = column(rows, "rollout/weight_sync_s")
    assert len(syncs) == 3 and all(s > 0 for s in syncs)


def test_engine_one_optimiser_step_behind_stops_the_run_at_step_1(tmp_path, tiny_model_dir, toy_task_files):
    with pytest.raises(StaleWeightsError, match=r"at step 1 \(rank 0: model\.embed_tokens\.weight\)"):
        fit(tmp_path, tiny_model_dir, toy_task_files, with_sync=False)
