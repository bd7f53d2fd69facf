"""End to end on the tiny model with the HF engine: `--data_parallel_size 2` runs two shard
processes on CPU, and the merged outputs equal a one-process run of the same protocol:
the same samples files line for line, the same metrics, the same results.md. A shard
killed mid-run is named in the error, the other shard's samples are kept, and the same
command run again generates only the missing chunks. The same equality holds with vLLM:
its engine runs in-process and samples from torch's default generator, which the runner
seeds per chunk, and a chunk is one engine call whichever process makes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
    """The run's arguments, HF engine unless `extra` says otherwise (later options win)."""
    samples = "{" + ", ".join(f"{name}: {n}" for name, (_, n) in BENCHMARKS.items()) + "}"
    return [sys.executable, "-m", "eval_harness", "run", "--ckpt", str(model_dir), "--engine.kind", "hf",
            "--template", "toy", "--benchmarks", ",".join(map(str, data)), "--num-samples", samples,
            "--max-new-tokens", "24", "--chunk-size", str(CHUNK), "--out", str(out), "--seed", "5", *extra]


def environment() -> dict:
    # one OpenMP thread per process: the shards and their grading workers share 2 cores
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def samples(out: Path, name: str) -> dict:
    records = [json.loads(line) for line in (out / f"samples_{name}.jsonl").read_text().splitlines()]
    assert len(records) == len({(r["problem"], r["sample"]) for r in records})  # nothing generated twice
    return {(r["problem"], r["sample"]): r for r in records}


def shard_pid(parent: int, rank: int, timeout_s: float = 120) -> int:
    """The pid of `parent`'s shard process `rank`, as soon as it exists (Linux /proc)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            if ppid == parent and f"shard{rank}.json".encode() in cmdline:
                return int(stat.parent.name)
        time.sleep(0.05)
    raise TimeoutError(f"shard {rank} of {parent} did not start")


@pytest.fixture(scope="module")
def data_and_reference(tiny_model_dir, tmp_path_factory):
    """The benchmark files and a one-process run's output folder."""
    folder = tmp_path_factory.mktemp("eval_dp")
    data = write_benchmarks(folder)
    subprocess.run(command(tiny_model_dir, data, folder / "one"), env=environment(), cwd=REPO, check=True,
                   timeout=600)
    return data, folder / "one"


@pytest.mark.slow
def test_two_cpu_shards_equal_one_process(tiny_model_dir, data_and_reference, tmp_path):
    data, one = data_and_reference
    two = tmp_path / "two"
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


@pytest.mark.slow
def test_killed_shard_is_named_and_a_rerun_fills_only_its_gap(tiny_model_dir, data_and_reference, tmp_path):
    data, one = data_and_reference
    out = tmp_path / "two"
    argv = command(tiny_model_dir, data, out, "--data-parallel-size", "2")
    # 5 chunks dealt round-robin: shard 0 takes a:0, a:2, b:0 and shard 1 takes a:1, a:3
    parent = subprocess.Popen(argv, env=environment(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    os.kill(shard_pid(parent.pid, 1), signal.SIGKILL)     # long before it has loaded the model
    _, stderr = parent.communicate(timeout=600)
    assert parent.returncode != 0
    assert "data-parallel shard 1 failed (killed by signal 9)" in stderr and "shard 0 failed" not in stderr
    assert "run the same command again" in stderr
    before = {name: (out / f"samples_{name}.jsonl").read_text().splitlines() for name in BENCHMARKS}
    assert {r["chunk"] for r in samples(out, "a").values()} == {0, 2}   # shard 0's work, merged and kept
    assert {r["chunk"] for r in samples(out, "b").values()} == {0}

    subprocess.run(argv, env=environment(), cwd=REPO, check=True, timeout=600)
    for name in BENCHMARKS:
        after = (out / f"samples_{name}.jsonl").read_text().splitlines()
        assert after[: len(before[name])] == before[name]      # kept, not regenerated
        assert samples(out, name) == samples(one, name)
    a, b = (json.loads((d / "results.json").read_text()) for d in (one, out))
    assert a["benchmarks"] == b["benchmarks"]


@pytest.mark.slow
@pytest.mark.vllm
def test_two_cpu_shards_equal_one_process_with_vllm(tiny_model_dir, tmp_path):
    pytest.importorskip("vllm")
    data = write_benchmarks(tmp_path)
    engine = ["--engine.kind", "vllm", "--engine.dtype", "float32", "--engine.kv_cache_gib", "0.25",
              "--engine.max_model_len", "256", "--engine.enforce_eager", "true"]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(command(tiny_model_dir, data, one, *engine), env=environment(), cwd=REPO, check=True, timeout=600)
    subprocess.run(command(tiny_model_dir, data, two, *engine, "--data-parallel-size", "2"), env=environment(),
                   cwd=REPO, check=True, timeout=600)
    for name in BENCHMARKS:
        assert (two / f"samples_{name}.jsonl").read_text() == (one / f"samples_{name}.jsonl").read_text()
    assert (two / "results.md").read_text() == (one / "results.md").read_text()
