"""benchmarks/gpu_check.py on a machine without a GPU: it says so and exits 0; --tiny runs its
three measurements' code paths at tiny sizes on CPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_gpu_check_without_a_gpu_says_so_and_exits_0():
    result = run()
    assert result.returncode == 0, result.stderr
    assert "gpu_check: no CUDA GPU on this machine; nothing measured" in result.stdout
    assert "(a)" not in result.stdout


@pytest.mark.slow
def test_gpu_check_tiny_runs_the_three_measurements_on_cpu():
    result = run("--tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "(a) toy fit on cpu: 2 steps" in out and "phases (s): rollout" in out
    perf = next(line for line in out.splitlines() if line.strip().startswith("perf:"))
    assert float(perf.split("perf/mfu")[1]) > 0  # every row went through the update
    assert "(b) token log-probs" in out and "values agree (tolerance 0.05 relative to max magnitude): True" in out
    assert "(c) update MFU: Qwen2" in out and "(measured): MFU" in out
    assert "gpu_check done" in out
