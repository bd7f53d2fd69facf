"""The toy reproduction of two rows (SFT, and SFT+RFT from it) x 2 seeds, each fit on 2 CPU ranks:
submitted with `--submit slurm --wait` to the real local SLURM (each fit under srun, 2 tasks, so
Lightning's SLURMEnvironment sets the ranks), it gives the table, and every sample behind it, of
the local runner on the same settings (Lightning's own launcher starting the 2 ranks)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.test_reproduce import ROOT, command, samples, scores
from tests.integration.test_slurm_cluster import slurm_cluster

pytestmark = [pytest.mark.slow]
__all__ = ["slurm_cluster"]
TWO_RANKS = "--fit-arg=--trainer.devices=2"


def test_slurm_table_equals_the_local_runners(slurm_cluster, tiny_model_dir, toy_task_files, tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    for out, extra in ((local, []), (cluster, ["--submit", "slurm", "--wait"])):
        proc = subprocess.run([*command(out, tiny_model_dir, toy_task_files), TWO_RANKS, *extra], check=False, cwd=ROOT,
                              capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    records = [json.loads(line) for line in (cluster / "jobs.jsonl").read_text().splitlines()]
    submitted = [r for r in records if r["state"] == "SUBMITTED"]
    assert len(submitted) == 8 and all(r["slurm_id"].isdigit() for r in submitted)  # 4 fits, 4 evaluations
    fit_log = (cluster / "sft_rft" / "s1" / "fit.log").read_text()
    assert "SLURM auto-requeueing enabled" in fit_log and "MEMBER: 2/2" in fit_log  # 2 srun tasks
    table, reference = (json.loads((out / "table.json").read_text()) for out in (cluster, local))
    assert list(table["rows"]) == ["sft", "sft_rft"] and scores(table) == scores(reference)
    assert samples(cluster) == samples(local) and len(samples(local)) == 4 * 4  # 4 runs x 4 reported splits
