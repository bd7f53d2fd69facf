"""The eval harness's data-parallel shards as the tasks of one SLURM job: `sbatch --ntasks=2`
runs `python -m eval_harness run --data-parallel-size 2` once, in its batch script, and the
evaluation starts its two shards as the tasks of one `srun` step (rank SLURM_PROCID, world
SLURM_NTASKS). The merged samples, results and report equal a one-process run's."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from tests.integration.test_eval_data_parallel import (
    BENCHMARKS,
    REPO,
    command,
    data_and_reference,
    environment,
)
from tests.integration.test_slurm_cluster import slurm_cluster

pytestmark = [pytest.mark.slow]
__all__ = ["data_and_reference", "slurm_cluster"]  # fixtures used below


def test_two_slurm_tasks_equal_one_process(slurm_cluster, tiny_model_dir, data_and_reference, tmp_path):
    data, one = data_and_reference
    two = tmp_path / "two"
    evaluation = shlex.join(command(tiny_model_dir, data, two, "--data-parallel-size", "2"))
    log = tmp_path / "job.log"
    job = subprocess.run(["sbatch", "--parsable", "--wait", "--ntasks=2", f"--output={log}", f"--chdir={REPO}",
                          "--wrap", evaluation], check=False, env=environment(), capture_output=True, text=True,
                         timeout=900)
    assert job.returncode == 0, log.read_text()[-5000:]

    slurm_id = job.stdout.strip()
    for rank in (0, 1):  # each shard was task <rank> of one srun step of that job
        shard_log = (two / "shards" / f"shard{rank}.log").read_text()
        assert f"shard {rank} of 2: SLURM task {rank} of step {slurm_id}.0" in shard_log
    for name in BENCHMARKS:
        assert (two / f"samples_{name}.jsonl").read_text() == (one / f"samples_{name}.jsonl").read_text()
    a, b = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert a["benchmarks"] == b["benchmarks"] and a["average"] == b["average"]
    assert (two / "results.md").read_text() == (one / "results.md").read_text()
