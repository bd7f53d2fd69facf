"""The one-node SLURM test cluster (scripts/slurm_cluster.sh), started once per test session by
the `slurm_cluster` fixture the other tests/integration/test_slurm_*.py import. Without a cluster
(no root to install it, daemons that do not start) the tests fail where the env var CI is set
and skip elsewhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"


@pytest.fixture(scope="session")
def slurm_cluster():
    """SLURM_CONF of a running test cluster, set in os.environ (subprocesses and jobs inherit it);
    the cluster is stopped at the end if this fixture started it."""
    was_up = subprocess.run(["bash", str(SCRIPT), "status"], check=False, capture_output=True).returncode == 0
    proc = subprocess.run(["bash", str(SCRIPT), "start"], check=False, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        message = f"no SLURM test cluster ({SCRIPT} start, exit {proc.returncode}): {proc.stderr[-3000:]}"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    conf = proc.stdout.strip().splitlines()[-1].removeprefix("export SLURM_CONF=")
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if before is None:
        os.environ.pop("SLURM_CONF")
    else:
        os.environ["SLURM_CONF"] = before
    if not was_up:
        subprocess.run(["bash", str(SCRIPT), "stop"], check=True, timeout=120)


def test_a_batch_job_runs_two_tasks(slurm_cluster, tmp_path):
    log = tmp_path / "job.log"
    subprocess.run(["sbatch", "--wait", "--ntasks=2", f"--output={log}", "--wrap", "srun printenv SLURM_PROCID"],
                   check=True, capture_output=True, timeout=120)
    assert sorted(log.read_text().split()) == ["0", "1"]
