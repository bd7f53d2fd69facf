"""End to end on the tiny model with the HF engine: `--data_parallel_size 2` runs two shard
processes on CPU, and the merged outputs equal a one-process run of the same protocol:
the same samples files line for line, the same metrics, the same results.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# "a": 5 problems x 3 samples in chunks of 4 (the last chunk splits a problem's samples), "b": 3 x 1
BENCHMARKS = {"a": (5, 3), "b": (3, 1)}
CHUNK = 4


def write_benchmarks(folder: Path) -> list[Path]:
    paths = []
    for name, (num_problems, _) in BENCHMARKS.items():
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": f"{name}{i}", "problem": f"{i}{i}1{i}#2{i}3{i}",
                                            "answer": [f"{i}{i}{i}{i}"]}) + "\n" for i in range(num_problems)))
        paths.append(path)
    return paths


def command(model_dir: Path, data: list[Path], out: Path, *extra: str) -> list[str]:
    samples = "{" + ", ".join(f"{name}: {n}" for name, (_, n) in BENCHMARKS.items()) + "}"
    return [sys.executable, "-m", "eval_harness", "run", "--ckpt", str(model_dir), "--engine", "hf",
            "--template", "toy", "--benchmarks", ",".join(map(str, data)), "--num-samples", samples,
            "--max-new-tokens", "24", "--chunk-size", str(CHUNK), "--out", str(out), "--seed", "5", *extra]


def environment() -> dict:
    # one OpenMP thread per process: the shards and their grading workers share 2 cores
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


@pytest.mark.slow
def test_two_cpu_shards_equal_one_process(tiny_model_dir, tmp_path):
    data = write_benchmarks(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(command(tiny_model_dir, data, one), env=environment(), cwd=REPO, check=True, timeout=600)
    subprocess.run(command(tiny_model_dir, data, two, "--data-parallel-size", "2"), env=environment(), cwd=REPO,
                   check=True, timeout=600)

    for name, (num_problems, num_samples) in BENCHMARKS.items():
        merged = (two / f"samples_{name}.jsonl").read_text()
        assert merged == (one / f"samples_{name}.jsonl").read_text()      # every completion, grade, chunk
        assert len(merged.splitlines()) == num_problems * num_samples
    assert not list(two.glob("samples_*.rank*.jsonl"))                  # folded in, then removed
    assert sorted(p.name for p in (two / "shards").glob("*.log")) == ["shard0.log", "shard1.log"]
    a, b = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert a["benchmarks"] == b["benchmarks"] and a["average"] == b["average"]
    assert b["config"]["data_parallel_size"] == 2
    assert (two / "results.md").read_text() == (one / "results.md").read_text()
    assert (two / "pass_at_k.png").stat().st_size > 0
