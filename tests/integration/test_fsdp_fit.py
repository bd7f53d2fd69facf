"""FSDP2 end to end through the CLI: Lightning's ModelParallelStrategy on 2 CPU processes
(gloo). The toy config trains and writes an HF export equal to the gathered weights of
its last (sharded, DCP) checkpoint; a run resumed from the step-1 checkpoint continues
the prefix schedule; the 8-bit AdamW trains sharded parameters.

Each run is a subprocess (`python -m prefix_rft_pl fit ...`, which Lightning relaunches
once per rank), so the test process never joins a process group.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import merge

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

ROOT = Path(__file__).resolve().parents[2]
FSDP2 = {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
         "init_args": {"data_parallel_size": 2, "tensor_parallel_size": 1}}  # "auto" would be all-TP


COSINE_2 = {"class_path": "callbacks.PrefixSchedule", "init_args": {"steps": 2}}  # cosine 0.95 -> 0.05 in 2 steps


def fit(run_dir: Path, tiny_model_dir, toy_task_files, steps: int, rows=(), extra=(), schedule=COSINE_2,
        model=None) -> Path:
    """Run the toy config (plus `rows` overlays) for `steps` steps on 2 processes; returns the log dir."""
    overlay = {
        "trainer": {
            "strategy": FSDP2, "devices": 2, "max_steps": steps, "limit_val_batches": 0,
            "default_root_dir": str(run_dir),
            "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                        "init_args": {"save_dir": str(run_dir), "name": "run"}}],
            "callbacks": [
                schedule,
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": str(run_dir / "ckpt"), "every_n_train_steps": 1, "save_top_k": -1}},
            ],
        },
        "model": merge({"rollout": {"group_size": 4, "max_response_tokens": 48}, "update": {"micro_batch_size": 8},
                        "reward": {"workers": 1}}, model or {}),
        "data": {"init_args": {"batch_size": 2}},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    configs = ["configs/toy/prefix_rft.yaml", *rows, str(run_dir / "overlay.yaml")]
    cmd = [sys.executable, "-m", "prefix_rft_pl", "fit", *(a for c in configs for a in ("--config", c)),
           "--model.policy", str(tiny_model_dir),
           "--data.init_args.train_files", str(toy_task_files["train"]),
           "--data.init_args.val_files", str(toy_task_files["heldout_easy"]), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return run_dir / "run"


def metric(log_dir: Path, key: str) -> list[float]:
    rows = csv.DictReader((log_dir / "metrics.csv").open())
    return [float(r[key]) for r in rows if r.get(key)]


def gathered_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The policy's full weights from a sharded (DCP) Lightning checkpoint directory."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    assert ckpt.is_dir() and (ckpt / "meta.pt").exists()  # sharded: DCP files + Lightning's meta.pt
    full = ckpt.parent / f"{ckpt.name}.pt"
    dcp_to_torch_save(ckpt, full)
    state = torch.load(full, weights_only=False)["state_dict"]
    return {k.removeprefix("policy."): v for k, v in state.items()}


def test_fsdp2_fit_checkpoints_and_exports_full_weights(tmp_path, tiny_model_dir, toy_task_files):
    from transformers import AutoModelForCausalLM

    # the random tiny model earns no reward, so no gradient either; weight decay still moves the weights
    log_dir = fit(tmp_path, tiny_model_dir, toy_task_files, steps=2, model={"optim": {"weight_decay": 0.1}})
    assert len(metric(log_dir, "train/loss")) == 2 and all(map(math.isfinite, metric(log_dir, "train/grad_norm")))

    exported = AutoModelForCausalLM.from_pretrained(str(log_dir / "hf_export"))
    trained = gathered_weights(tmp_path / "ckpt" / "epoch=0-step=2.ckpt")
    initial = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).state_dict()
    for name, value in exported.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0, msg=lambda m: f"{name}: {m}")
    assert not torch.equal(trained["lm_head.weight"], initial["lm_head.weight"])  # the optimiser stepped


def test_fsdp2_resume_restores_the_prefix_schedule(tmp_path, tiny_model_dir, toy_task_files):
    fit(tmp_path / "first", tiny_model_dir, toy_task_files, steps=2)
    ckpt = tmp_path / "first" / "ckpt" / "epoch=0-step=1.ckpt"
    meta = torch.load(ckpt / "meta.pt", weights_only=False)
    assert meta["global_step"] == 1
    assert next(v for k, v in meta["callbacks"].items() if k.startswith("PrefixSchedule")) == {"step": 1}

    log_dir = fit(tmp_path / "resumed", tiny_model_dir, toy_task_files, steps=3, extra=["--ckpt_path", str(ckpt)])
    from prefix_rft_pl.schedule import SCHEDULES

    at_step_1 = SCHEDULES["cosine"](1, 0.95, 0.05, 2, 0)  # the overlay's schedule: cosine over 2 steps
    assert metric(log_dir, "train/low_t") == pytest.approx([at_step_1, 0.05])  # steps 1 and 2, not 0
    assert len(metric(log_dir, "train/loss")) == 2
    assert (tmp_path / "resumed" / "ckpt" / "epoch=0-step=3.ckpt" / "meta.pt").exists()


SFT_SCHEDULE = {"class_path": "callbacks.PrefixSchedule",  # as configs/rows/sft.yaml: the whole demonstration
                "init_args": {"kind": "constant", "low_start": 1.0, "high": 1.0}}


def test_fsdp2_adamw8bit_sft_loss_falls(tmp_path, tiny_model_dir, toy_task_files):
    # the paper configs' numerics: 8-bit AdamW steps float32 master shards, compute in bf16
    log_dir = fit(tmp_path, tiny_model_dir, toy_task_files, steps=4, rows=["configs/rows/sft.yaml"],
                  schedule=SFT_SCHEDULE, model={"optim": {"name": "adamw8bit", "lr": 3e-3},
                                                "rollout": {"group_size": 1},
                                                "precision": {"compute": "bfloat16", "reduce": "float32"}})
    losses = metric(log_dir, "train/loss")
    assert len(losses) == 4 and losses[-1] < losses[0], losses
