"""End to end: the toy config fits for a few steps with the HF engine through the CLI;
checkpoints, the HF export and the run manifest load back; a user callback runs."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


class RecordRewards(L.Callback):
    """A user callback, as the README shows: it sees every step's logged metrics."""

    seen: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        RecordRewards.seen.append(float(trainer.callback_metrics["reward"]))


def overlay(tmp_path: Path, steps: int) -> Path:
    cfg = {
        "trainer": {
            "max_steps": steps, "val_check_interval": steps, "limit_val_batches": 1,
            "default_root_dir": str(tmp_path),
            "logger": [
                {"class_path": "lightning.pytorch.loggers.CSVLogger",
                 "init_args": {"save_dir": str(tmp_path), "name": "run"}},
                {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                 "init_args": {"save_dir": str(tmp_path), "name": "tb"}},
            ],
            "callbacks": [
                {"class_path": "callbacks.PrefixSchedule", "init_args": {"steps": steps}},
                {"class_path": "callbacks.EntropyStats"},
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": str(tmp_path / "ckpt"), "every_n_train_steps": 1, "save_top_k": -1}},
                {"class_path": "tests.integration.test_fit_toy.RecordRewards"},
            ],
        },
        "model": {"rollout": {"group_size": 4}, "update": {"micro_batch_size": 8}},
        "data": {"init_args": {"batch_size": 2, "val_batch_size": 4}},
    }
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def fit(tmp_path, tiny_model_dir, toy_task_files, steps=2, extra=()):
    from prefix_rft_pl.cli import main

    main(["fit", "--config", "configs/toy/prefix_rft.yaml", "--config", str(overlay(tmp_path, steps)),
          "--model.policy", str(tiny_model_dir),
          "--data.init_args.train_files", str(toy_task_files["train"]),
          "--data.init_args.val_files", str(toy_task_files["heldout_easy"]), *extra])


def test_fit_toy_config_checkpoints_export_and_manifest(tmp_path, tiny_model_dir, toy_task_files):
    RecordRewards.seen.clear()
    fit(tmp_path, tiny_model_dir, toy_task_files, steps=2)
    assert len(RecordRewards.seen) == 2  # the user callback ran every step

    run = tmp_path / "run"
    rows = list(__import__("csv").DictReader((run / "metrics.csv").open()))
    logged = {k for row in rows for k, v in row.items() if v}
    for key in ["reward/ordinary", "reward/hybrid", "rollout/prefix_ratio", "train/low_t", "train/high_t",
                "entropy/prefix_mean", "entropy/generated_mean", "entropy/kept_fraction", "entropy/threshold",
                "train/loss", "train/grad_norm", "rollout/response_len", "time/rollout_s", "time/reward_s",
                "time/logprob_s", "time/update_s", "val/accuracy",
                "perf/gen_tokens_per_s", "perf/tokens_per_s", "perf/mfu"]:
        assert key in logged, key
    steps = [row for row in rows if row.get("perf/mfu")]
    assert len(steps) == 2 and all(float(row["perf/gen_tokens_per_s"]) > 0 for row in steps)
    for row in steps:  # FLOPs of the updated rows only (a group with equal rewards has no gradient)
        assert 0 <= float(row["perf/mfu"]) < 1  # against the matmul rate measured at fit start
        assert (float(row["perf/mfu"]) > 0) == (float(row["perf/tokens_per_s"]) > 0) == \
            (float(row["train/update_rows"]) > 0)
    assert list(tmp_path.glob("tb/**/events.out.tfevents*"))  # TensorBoard too

    manifest = json.loads((run / "run_manifest.json").read_text())
    assert manifest["seed"] == 0 and "torch" in manifest["packages"] and manifest["git_commit"]
    assert (run / "config.yaml").exists()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = run / "hf_export"
    model = AutoModelForCausalLM.from_pretrained(str(export))
    AutoTokenizer.from_pretrained(str(export))
    trained = dict(model.named_parameters())

    ckpts = sorted((tmp_path / "ckpt").glob("epoch=*.ckpt"))  # and last.ckpt, the finished run's
    assert len(ckpts) == 2 and (tmp_path / "ckpt" / "last.ckpt").is_file()
    state = torch.load(ckpts[-1], weights_only=False, map_location="cpu")
    assert state["global_step"] == 2 and state["hyper_parameters"]["policy"] == str(tiny_model_dir)
    torch.testing.assert_close(state["state_dict"]["policy.model.embed_tokens.weight"],
                               trained["model.embed_tokens.weight"])
    schedule = next(v for k, v in state["callbacks"].items() if k.startswith("PrefixSchedule"))
    assert schedule == {"step": 2}


def test_resume_continues_the_schedule(tmp_path, tiny_model_dir, toy_task_files):
    fit(tmp_path, tiny_model_dir, toy_task_files, steps=2)
    ckpt = sorted((tmp_path / "ckpt").glob("*step=1*.ckpt"))[0]  # after the first step
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    fit(resumed, tiny_model_dir, toy_task_files, steps=2, extra=["--ckpt_path", str(ckpt)])
    rows = list(__import__("csv").DictReader((resumed / "run" / "metrics.csv").open()))
    lows = [float(r["train/low_t"]) for r in rows if r.get("train/low_t")]
    assert lows == [pytest.approx(0.5)]  # cosine over 2 steps at step 1: the midpoint, not step 0 (0.95)
