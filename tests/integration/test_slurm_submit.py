"""`reproduce --submit slurm` on the real local SLURM, for a small plan with one dependency chain
(SFT -> its evaluation; SFT -> SFT+RFT -> its evaluation). The jobs are submitted held
(`--sbatch=--hold`), so nothing trains: the test is about the submission. A dependency is
`afterok` on the SLURM id it needs; jobs.jsonl records every id; the same command again submits
nothing new; a job that fails (the SFT fit, released, with a policy that does not exist) is
resubmitted with its dependants, which SLURM cancelled (--kill-on-invalid-dep), on new ids."""

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
JOBS = ["fit:sft/s0", "eval:sft/s0", "fit:sft_rft/s0", "eval:sft_rft/s0"]


def submit(out: Path, task: dict) -> list[str]:
    """The harness's output lines, one per job."""
    argv = [sys.executable, "-m", "eval_harness", "reproduce", "--model", "toy", "--rows", "sft", "sft_rft",
            "--seeds", "0", "--steps", "1", "--policy", str(out.parent / "missing_policy"),
            "--toy-task", str(Path(task["train"]).parent), f"--fit-arg=--data.init_args.train_files={task['train']}",
            "--out", str(out), "--submit", "slurm", "--sbatch=--hold"]
    proc = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return [line for line in proc.stdout.splitlines() if line.startswith("[")]


def submitted(out: Path) -> dict[str, list[dict]]:
    """job id -> its submission records in jobs.jsonl, oldest first."""
    records = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    return {job: [r for r in records if r["job"] == job and r["state"] == "SUBMITTED"] for job in JOBS}


def state(slurm_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True, check=True).stdout
    return out.split("JobState=")[1].split()[0]


def wait_for_states(ids: list[str], wanted: set[str], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while {state(i) for i in ids} - wanted:
        assert time.monotonic() < deadline, {i: state(i) for i in ids}
        time.sleep(1)


def test_submit_afterok_rerun_and_resubmission(slurm_cluster, toy_task_files, tmp_path):
    out = tmp_path / "out"
    try:
        lines = submit(out, toy_task_files)
        first = {job: records[-1] for job, records in submitted(out).items()}
        ids = [first[job]["slurm_id"] for job in JOBS]
        assert all(line.split(": ")[1].startswith("submitted") for line in lines) and len(lines) == 4
        fit_sft, _, fit_rft, _ = ids
        assert [first[job]["after"] for job in JOBS] == [[], [fit_sft], [fit_sft], [fit_rft]]
        dependency = subprocess.run(["scontrol", "show", "job", fit_rft], check=True, capture_output=True,
                                    text=True).stdout
        assert f"Dependency=afterok:{fit_sft}" in dependency
        script = Path(first["fit:sft_rft/s0"]["script"]).read_text()
        assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --signal=USR1@90" in script
        assert "#SBATCH --requeue" in script
        assert f"srun --kill-on-bad-exit=1 {sys.executable} -m prefix_rft_pl" in script
        assert f"--config {ROOT}/configs/toy/prefix_rft.yaml" in script  # absolute paths

        lines = submit(out, toy_task_files)  # all four queued: nothing new
        assert [line.split(": ")[1].split()[0] for line in lines] == ["queued"] * 4
        assert {job: len(r) for job, r in submitted(out).items()} == dict.fromkeys(JOBS, 1)

        subprocess.run(["scontrol", "release", fit_sft], check=True)  # runs, and fails: no such policy
        wait_for_states(ids, {"FAILED", "CANCELLED"})
        assert state(fit_sft) == "FAILED" and {state(i) for i in ids[1:]} == {"CANCELLED"}
        lines = submit(out, toy_task_files)
        again = {job: records[-1] for job, records in submitted(out).items()}
        assert all(again[job]["slurm_id"] != first[job]["slurm_id"] for job in JOBS)
        assert lines[0].endswith("(was FAILED)") and lines[2].endswith("(was CANCELLED)")
        assert again["fit:sft_rft/s0"]["after"] == [again["fit:sft/s0"]["slurm_id"]]
    finally:  # every job the harness submitted, held or not
        if (out / "jobs.jsonl").is_file():
            ids = [json.loads(line)["slurm_id"] for line in (out / "jobs.jsonl").read_text().splitlines()]
            subprocess.run(["scancel", *set(ids)], check=False)


def test_the_preparation_job_runs_as_a_batch_job_and_is_then_done(slurm_cluster, tiny_model_dir, tmp_path):
    """Qwen2.5-Math's first job, on the real scheduler: one task, no srun; its copy is written
    and read back, and the same submission again sends nothing (the marker says done)."""
    from eval_harness import slurm
    from eval_harness.reproduce import Request, prepare_job
    from prefix_rft_pl.extend_context import ContextExtension

    out = tmp_path / "out"
    job = prepare_job(Request("qwen2.5-math-7b", out, [], [0]), ContextExtension(16384, 40000.0), str(tiny_model_dir))
    options = slurm.SlurmOptions(workdir=str(ROOT))
    actions = slurm.submit([job], out, options)
    assert [a.what for a in actions] == ["submitted"]
    slurm.wait_for({actions[0].slurm_id}, poll_s=1)
    log = (out / "models" / "qwen2.5-math-7b-ctx16384.log").read_text()
    assert job.done(), log
    config = json.loads((job.marker.parent / "config.json").read_text())
    assert config["max_position_embeddings"] == 16384 and config["rope_parameters"]["rope_theta"] == 40000.0
    assert [a.what for a in slurm.submit([job], out, options)] == ["done"]
