"""Resume equals never stopping: a toy fit killed at a step drawn at random (SIGKILL) or
stopped by SIGTERM, then launched again with the same command, ends with bit-identical weights
and the same per-step metrics as an uninterrupted run. With the HF engine, with the vLLM
engine, and on 2 FSDP2 ranks. Through the CLI, as a user runs it: the default `--ckpt_path
last` finds the run's own checkpoints in its stable run directory."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from prefix_rft_pl.cli import read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6
VLLM = {"kind": "vllm", "dtype": "float32", "max_model_len": 256, "kv_cache_gib": 0.25, "enforce_eager": True}
TWO_RANKS = {"accelerator": "cpu", "devices": 2,
             "strategy": {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
                          "init_args": {"data_parallel_size": 2, "tensor_parallel_size": 1}}}


def command(run: Path, model_dir, toy_task_files, engine=None, trainer=None) -> list[str]:
    overlay = {
        "trainer": {
            "max_steps": STEPS, "log_every_n_steps": 1, "default_root_dir": str(run),
            "enable_model_summary": False,
            "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                        "init_args": {"save_dir": str(run), "name": "train", "flush_logs_every_n_steps": 1}}],
            # a cosine over the run, from whole demonstrations (so that hybrids earn reward on a random model)
            "callbacks": [{"class_path": "callbacks.PrefixSchedule", "init_args": {"low_start": 1.0, "low_end": 0.97,
                                                                                   "high": 1.0}},
                          {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"every_n_train_steps": 1, "save_last": True}}],
            **(trainer or {}),
        },
        "model": {"policy": str(model_dir), "rollout": {"group_size": 4, "max_response_tokens": 40},
                  "update": {"micro_batch_size": 16}, "reward": {"workers": 1},
                  **({"engine": engine} if engine else {})},
        "data": {"init_args": {"train_files": str(toy_task_files["train"]), "val_files": None, "batch_size": 4}},
    }
    run.mkdir(parents=True, exist_ok=True)
    (run / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    return [sys.executable, "-m", "prefix_rft_pl", "fit", "--config", "configs/toy/prefix_rft.yaml",
            "--config", str(run / "overlay.yaml")]


def launch(cmd: list[str], stop_at: int | None = None, how: int = signal.SIGKILL) -> tuple[int, str]:
    """Run `cmd`; with `stop_at`, send `how` to its process group once step `stop_at` is reported."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    deadline = time.time() + 600
    for line in proc.stdout:
        lines.append(line)
        if stop_at is not None and line.startswith(f"step {stop_at}/"):
            # the line is printed as step `stop_at` + 1 starts: the signal lands in that step's rollout.
            # (A SIGKILL in the instant between a step's checkpoint and its metrics flush, which
            # Lightning does after the checkpoint callbacks, loses that step's metrics row, not its state.)
            time.sleep(random.uniform(0.0, 0.05))
            os.killpg(proc.pid, how)
            stop_at = None
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("no exit in 600 s:\n" + "".join(lines[-50:]))
    return proc.wait(), "".join(lines)


def outcome(run: Path) -> tuple[dict, dict]:
    """The exported weights, and every step's metrics but the timings and what is made of them
    (perf/*: tokens per second and MFU)."""
    weights = load_file(run / "train" / "hf_export" / "model.safetensors")
    metrics = {step: {k: v for k, v in row.items() if not k.startswith(("time/", "perf/")) and not k.endswith("_s")}
               for step, row in read_metrics(run / "train").items()}
    return weights, metrics


def assert_same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    weights_a, metrics_a = a
    weights_b, metrics_b = b
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert weights_a[name].equal(weights_b[name]), f"{name} differs"  # bit-identical
    assert sorted(metrics_a) == sorted(metrics_b) and len(metrics_a) >= STEPS
    assert metrics_a == metrics_b


@pytest.mark.parametrize("engine,trainer", [(None, None), (VLLM, None), (None, TWO_RANKS)],
                         ids=["hf", "vllm", "fsdp2-2ranks"])
def test_sigkill_or_sigterm_then_relaunch_equals_never_stopping(tmp_path, tiny_model_dir, toy_task_files, engine,
                                                                  trainer):
    if engine is not None:
        pytest.importorskip("vllm")
    uninterrupted = tmp_path / "uninterrupted"
    code, log = launch(command(uninterrupted, tiny_model_dir, toy_task_files, engine, trainer))
    assert code == 0, log[-6000:]
    reference = outcome(uninterrupted)
    assert max(float(row["train/grad_norm"]) for row in reference[1].values()) > 0  # the weights moved

    rng = random.Random()
    for how in (signal.SIGKILL, signal.SIGTERM):
        run = tmp_path / signal.Signals(how).name
        cmd = command(run, tiny_model_dir, toy_task_files, engine, trainer)
        stop_at = rng.randint(1, STEPS - 2)
        code, log = launch(cmd, stop_at, how)
        assert not (run / "train" / "hf_export").exists(), "an interrupted run must not look finished"
        if how == signal.SIGTERM:
            assert code == 0 and "stopped at step" in log, log[-6000:]
        code, log = launch(cmd)  # the same command again
        assert code == 0 and ("resuming at step" in log or "nothing left to train" in log), log[-6000:]
        assert_same(outcome(run), reference)
