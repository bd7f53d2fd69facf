"""Pre-emption on the real local SLURM: a fit submitted by `reproduce --submit slurm` gets SIGUSR1
mid-run (`scancel --signal=USR1`, what `#SBATCH --signal=USR1@90` sends before the time limit).
The run finishes its step, saves last.ckpt and requeues its job (prefix_rft_pl/run_control.py);
the batch script runs again with `--ckpt_path last`, and the fit ends with the same weights as
the same fit submitted without interruption."""

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


def submit(out: Path, tiny_model_dir, toy_task_files) -> dict[str, str]:
    argv = [sys.executable, "-m", "eval_harness", "reproduce", "--model", "toy", "--rows", "sft", "--seeds", "0",
            "--steps", str(STEPS), "--policy", str(tiny_model_dir),
            "--toy-task", str(Path(toy_task_files["train"]).parent),
            f"--fit-arg=--data.init_args.train_files={toy_task_files['train']}",
            f"--fit-arg=--data.init_args.val_files={toy_task_files['heldout_easy']}",
            "--eval-set", "limit=2", "default_num_samples=1", "--out", str(out), "--submit", "slurm"]
    proc = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    records = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    return {r["job"]: r["slurm_id"] for r in records}


def test_sigusr1_requeues_the_fit_which_resumes_exactly(slurm_cluster, tiny_model_dir, toy_task_files, tmp_path):
    from safetensors.torch import load_file

    out, reference = tmp_path / "out", tmp_path / "reference"
    ids, reference_ids = submit(out, tiny_model_dir, toy_task_files), submit(reference, tiny_model_dir, toy_task_files)
    fit, run = ids["fit:sft/s0"], out / "sft" / "s0"
    log = run / "fit.log"
    try:
        wait_until(lambda: log.is_file() and "step 20/" in log.read_text(), "the fit's training")
        subprocess.run(["scancel", "--signal=USR1", fit], check=True)
        wait_until(lambda: job_state(fit) in ("COMPLETED", "FAILED", "CANCELLED") and "restart 1" in log.read_text(),
                   "the requeued fit", 900)
        text = log.read_text()
        assert job_state(fit) == "COMPLETED", text[-5000:]
        first, second = text.split(f"SLURM job {fit}, restart 1")  # the same job id, run a second time
        assert "received SIGUSR1" in first and "stopped at step" in first and "requeueing SLURM job" in first
        assert "resuming at step" in second and f"`max_steps={STEPS}` reached" in second
        marker = "train/hf_export/export_complete.json"
        assert (run / marker).is_file()
        reference_fit = reference_ids["fit:sft/s0"]
        wait_until(lambda: job_state(reference_fit) in ("COMPLETED", "FAILED", "CANCELLED"), "the reference fit", 900)
        assert (reference / "sft" / "s0" / marker).is_file()
        resumed = load_file(run / "train" / "hf_export" / "model.safetensors")
        uninterrupted = load_file(reference / "sft" / "s0" / "train" / "hf_export" / "model.safetensors")
        assert all(resumed[name].equal(uninterrupted[name]) for name in uninterrupted)  # bit-identical
    finally:
        subprocess.run(["scancel", *ids.values(), *reference_ids.values()], check=False)
