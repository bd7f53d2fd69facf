"""Settings apply or are refused: one seed decides every seed, a config overlay cannot drop the
prefix schedule silently, a schedule longer than the run is reported, the learning-rate schedule
steps as configured and survives a resume, and subcommands and options that cannot work are
not offered. Through the CLI, in process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import yaml

from prefix_rft_pl.cli import main, read_metrics

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


class RecordBatches(L.Callback):
    """The uids of every training batch and the rollouts' response lengths, per run."""

    seen: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        RecordBatches.seen.append(([item.uid for item in batch.items], outputs["mask"].sum(-1).tolist()))


class StopAt(L.Callback):
    """Stops the run (as a finished one) after `step` optimiser steps."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def fit(run: Path, tiny_model_dir, toy_task_files, *extra: str, callbacks=None, steps: int = 2, model=None) -> Path:
    overlay = {
        "trainer": {"max_steps": steps, "log_every_n_steps": 1, "default_root_dir": str(run),
                    "enable_model_summary": False,
                    "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                "init_args": {"save_dir": str(run), "name": "train"}}]},
        "model": {"policy": str(tiny_model_dir), "rollout": {"group_size": 4, "max_response_tokens": 40},
                  "update": {"micro_batch_size": 16}, "reward": {"workers": 1}, **(model or {})},
        "data": {"init_args": {"train_files": str(toy_task_files["train"]), "val_files": None, "batch_size": 4}},
    }
    if callbacks is not None:
        overlay["trainer"]["callbacks"] = callbacks
    run.mkdir(parents=True, exist_ok=True)
    (run / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    main(["fit", "--config", "configs/toy/prefix_rft.yaml", "--config", str(run / "overlay.yaml"), *extra])
    return run / "train"


def test_seed_everything_decides_the_data_order_and_the_rollouts(tmp_path, tiny_model_dir, toy_task_files):
    runs = {}
    for name, seed in (("a", 7), ("again", 7), ("other", 8)):
        RecordBatches.seen = []
        log_dir = fit(tmp_path / name, tiny_model_dir, toy_task_files, "--seed_everything", str(seed),
                      "--trainer.callbacks+=tests.integration.test_run_trust.RecordBatches")
        runs[name] = list(RecordBatches.seen)
        manifest = json.loads((log_dir / "run_manifest.json").read_text())
        assert manifest["seeds"] == {"seed_everything": seed, "model.seed": seed, "data.seed": seed}
    assert runs["a"] == runs["again"]                       # the same seed reproduces both
    assert [u for u, _ in runs["a"]] != [u for u, _ in runs["other"]]  # another seed: another data order
    assert [r for _, r in runs["a"]] != [r for _, r in runs["other"]]  # and other rollouts


def test_an_overlay_that_drops_the_prefix_schedule_is_refused_naming_the_append_syntax(tmp_path, tiny_model_dir,
                                                                                         toy_task_files):
    mine = [{"class_path": "tests.integration.test_run_trust.RecordBatches"}]  # the README's custom-callback case
    with pytest.raises(ValueError, match=r"--trainer\.callbacks\+=callbacks\.PrefixSchedule"):
        fit(tmp_path / "dropped", tiny_model_dir, toy_task_files, callbacks=mine)
    # appended instead: the base's schedule (and the user's callback) run
    log_dir = fit(tmp_path / "appended", tiny_model_dir, toy_task_files,
                  "--trainer.callbacks+=tests.integration.test_run_trust.RecordBatches")
    lows = [float(row["train/low_t"]) for row in read_metrics(log_dir).values() if "train/low_t" in row]
    assert lows == pytest.approx([0.95, 0.5])  # the toy's cosine over the run's 2 steps: start, midpoint


def test_a_schedule_set_longer_than_the_run_is_reported(tmp_path, tiny_model_dir, toy_task_files):
    with pytest.warns(UserWarning, match=r"steps 100, but the run has 2 rollout batches.*low_t ends at 0\.94"):
        fit(tmp_path, tiny_model_dir, toy_task_files, callbacks=[
            {"class_path": "callbacks.PrefixSchedule", "init_args": {"steps": 100}}])


def expected_lr(step: int, lr=1e-3, warmup=2, total=6, floor=0.1) -> float:
    """transformers' cosine_with_min_lr with a linear warm-up, by hand."""
    import math

    if step < warmup:
        return lr * step / warmup
    progress = (step - warmup) / (total - warmup)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def test_learning_rate_warmup_and_cosine_step_by_step_and_across_a_resume(tmp_path, tiny_model_dir, toy_task_files):
    optim = {"optim": {"lr": 1e-3, "warmup_steps": 2, "decay": "cosine", "min_lr_ratio": 0.1}}
    checkpoints = [{"class_path": "callbacks.PrefixSchedule"},
                   {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}}]
    whole = fit(tmp_path / "whole", tiny_model_dir, toy_task_files, steps=6, model=optim, callbacks=checkpoints)
    lrs = [float(read_metrics(whole)[step]["train/lr"]) for step in range(6)]
    assert lrs == pytest.approx([expected_lr(step) for step in range(6)], rel=1e-6)
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(1e-3)  # the warm-up, then the peak

    # stopped after 3 steps (a finished launch), then the same command again: the schedule continues
    run = tmp_path / "resumed"
    stop = [*checkpoints, {"class_path": "tests.integration.test_run_trust.StopAt", "init_args": {"step": 3}}]
    fit(run, tiny_model_dir, toy_task_files, steps=6, model=optim, callbacks=stop)
    resumed = fit(run, tiny_model_dir, toy_task_files, steps=6, model=optim, callbacks=checkpoints)
    assert [float(read_metrics(resumed)[step]["train/lr"]) for step in range(6)] == lrs


def test_a_new_run_into_a_folder_holding_checkpoints_is_refused_and_they_are_kept(tmp_path, tiny_model_dir,
                                                                                  toy_task_files):
    checkpoints = [{"class_path": "callbacks.PrefixSchedule"},
                   {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}}]
    run = tmp_path / "run"
    fit(run, tiny_model_dir, toy_task_files, callbacks=checkpoints)
    kept = {p: p.stat().st_mtime_ns for p in run.rglob("*.ckpt")}
    assert kept
    with pytest.raises(FileExistsError, match=r"already holds checkpoints.*--ckpt_path last"):
        fit(run, tiny_model_dir, toy_task_files, "--ckpt_path", "null", callbacks=checkpoints)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.ckpt")} == kept  # nothing overwritten
    fit(run, tiny_model_dir, toy_task_files, steps=3, callbacks=checkpoints)  # the default resumes it


def test_subcommands_and_options_that_cannot_work_are_not_offered():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "prefix_rft_pl", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)

    for sub in ("test", "predict"):  # the module has no test_step / predict_step
        out = cli(sub, "--help")
        assert out.returncode != 0 and "invalid choice" in out.stderr
    out = cli("fit", "--config", "configs/toy/prefix_rft.yaml", "--optimizer", "SGD", "--print_config")
    assert out.returncode != 0 and "--optimizer" in out.stderr  # model.optim is the optimiser
    out = cli("fit", "--help")
    assert "--model.optim.warmup_steps" in out.stdout and "--lr_scheduler" not in out.stdout
