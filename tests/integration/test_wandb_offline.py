"""A toy fit logs to Weights & Biases offline: the run's folder holds the per-step metrics
(train/loss, perf/mfu) and the completion-samples table."""

import json
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def overlay(tmp_path: Path, steps: int) -> Path:
    cfg = {
        "trainer": {
            "max_steps": steps, "limit_val_batches": 0, "default_root_dir": str(tmp_path),
            "logger": [
                {"class_path": "lightning.pytorch.loggers.CSVLogger",
                 "init_args": {"save_dir": str(tmp_path), "name": "run"}},
                {"class_path": "lightning.pytorch.loggers.WandbLogger",
                 "init_args": {"save_dir": str(tmp_path), "project": "prefix-rft-test", "offline": True}},
            ],
            "callbacks": [
                {"class_path": "callbacks.PrefixSchedule", "init_args": {"steps": steps}},
                {"class_path": "callbacks.CompletionSamples", "init_args": {"every_n_steps": 1, "num_samples": 4}},
            ],
        },
        "model": {"rollout": {"group_size": 4}, "update": {"micro_batch_size": 8}},
        "data": {"init_args": {"batch_size": 2}},
    }
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_toy_fit_logs_metrics_and_completions_to_an_offline_wandb_run(tmp_path, tiny_model_dir, toy_task_files,
                                                                    monkeypatch):
    wandb = pytest.importorskip("wandb")
    from prefix_rft_pl.cli import main

    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
           "WANDB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_CONFIG_DIR": str(tmp_path / "config")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        main(["fit", "--config", "configs/toy/prefix_rft.yaml", "--config", str(overlay(tmp_path, 2)),
              "--model.policy", str(tiny_model_dir), "--data.init_args.train_files", str(toy_task_files["train"]),
              "--data.init_args.val_files", str(toy_task_files["heldout_easy"])])
    finally:
        wandb.finish()  # the run's files are complete once it finishes (else at process exit)

    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    # an offline run keeps its history in the binary log `wandb sync` uploads (no wandb-summary.json);
    # its records hold the metric keys as plain protobuf strings: once per step and more
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    for key in ["train/loss", "perf/mfu", "perf/tokens_per_s", "perf/gen_tokens_per_s", "reward/ordinary"]:
        assert log.count(key.encode()) >= 2, key
    tables = sorted((runs[0] / "files" / "media" / "table").glob("completions_*.table.json"))
    assert len(tables) == 2  # callbacks.CompletionSamples, every step
    for path in tables:
        table = json.loads(path.read_text())
        assert "completion" in table["columns"] and len(table["data"]) == 4
