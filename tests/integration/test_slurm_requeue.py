"""Pre-emption wiring on the real local SLURM: a fit submitted by `reproduce --submit slurm` gets
SIGUSR1 mid-run (`scancel --signal=USR1`, what `#SBATCH --signal=USR1@90` sends before the time
limit). Lightning's SLURM handler saves <run>/hpc_ckpt_1.ckpt and requeues the job; the batch
script runs again, passes that checkpoint as --ckpt_path, and the fit ends with its export.
(Whether the resumed weights are bit-identical to an uninterrupted run's is the exact-resume
issue's test, not this one's.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_slurm_cluster import slurm_cluster

pytestmark = [pytest.mark.slow]
__all__ = ["slurm_cluster"]
ROOT = Path(__file__).resolve().parents[2]
STEPS = 150


def wait_until(check, what: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def job_state(slurm_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True, check=True).stdout
    return out.split("JobState=")[1].split()[0]


def test_sigusr1_requeues_the_fit_which_resumes_from_its_hpc_checkpoint(slurm_cluster, tiny_model_dir,
                                                                         toy_task_files, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "eval_harness", "reproduce", "--model", "toy", "--rows", "sft", "--seeds", "0",
            "--steps", str(STEPS), "--policy", str(tiny_model_dir),
            "--toy-task", str(Path(toy_task_files["train"]).parent),
            f"--fit-arg=--data.init_args.train_files={toy_task_files['train']}",
            f"--fit-arg=--data.init_args.val_files={toy_task_files['heldout_easy']}",
            "--eval-set", "limit=2", "default_num_samples=1", "--out", str(out), "--submit", "slurm"]
    proc = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    records = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    ids = {r["job"]: r["slurm_id"] for r in records}
    fit, run = ids["fit:sft/s0"], out / "sft" / "s0"
    log = run / "fit.log"
    try:
        wait_until(lambda: log.is_file() and "Setting signal handlers" in log.read_text(), "the fit's training")
        time.sleep(3)  # a few optimiser steps in
        subprocess.run(["scancel", "--signal=USR1", fit], check=True)
        wait_until(lambda: (run / "hpc_ckpt_1.ckpt").is_file(), "Lightning's hpc checkpoint", 120)
        wait_until(lambda: job_state(fit) in ("COMPLETED", "FAILED", "CANCELLED"), "the requeued fit", 900)
        text = log.read_text()
        assert job_state(fit) == "COMPLETED", text[-5000:]
        first, second = text.split(f"SLURM job {fit}, restart 1")  # the same job id, run a second time
        assert "Handling auto-requeue signal" in first and "Trainer.fit` stopped" not in first
        assert f"Restoring states from the checkpoint path at {run}/hpc_ckpt_1.ckpt" in second
        assert f"`max_steps={STEPS}` reached" in second
        assert (run / "train" / "hf_export" / "export_complete.json").is_file()
    finally:
        subprocess.run(["scancel", *ids.values()], check=False)
