"""End to end on the tiny model with the HF engine: a run killed with SIGKILL halfway and
restarted with the same arguments regenerates only the missing chunks and ends with the
same samples and numbers as an uninterrupted run."""

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
NUM_PROBLEMS, NUM_SAMPLES, CHUNK = 6, 4, 4   # 24 samples in 6 chunks


def write_benchmark(path: Path) -> None:
    with path.open("w") as f:
        for i in range(NUM_PROBLEMS):
            f.write(json.dumps({"id": f"p{i}", "problem": f"{i}{i}1{i}#2{i}3{i}", "answer": [f"{i}{i}{i}{i}"]}) + "\n")


def command(model_dir: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "eval_harness", "run", "--ckpt", str(model_dir), "--engine.kind", "hf",
            "--template", "toy", "--benchmarks", str(data), "--num-samples", f"{{{data.stem}: {NUM_SAMPLES}}}",
            "--max-new-tokens", "24", "--chunk-size", str(CHUNK), "--out", str(out), "--seed", "3"]


def environment() -> dict:
    # one OpenMP thread: on a shared 2-core machine spinning threads make generate 20x slower
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def samples(out: Path, name: str) -> dict:
    lines = (out / f"samples_{name}.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len({(r["problem"], r["sample"]) for r in records})  # nothing generated twice
    return {(r["problem"], r["sample"]): (r["completion"], r["correct"]) for r in records}


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path):
    data = tmp_path / "mini.jsonl"
    write_benchmark(data)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    subprocess.run(command(tiny_model_dir, data, full), env=environment(), cwd=REPO, check=True, timeout=600)

    proc = subprocess.Popen(command(tiny_model_dir, data, resumed), env=environment(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sample_file = resumed / "samples_mini.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if sample_file.is_file() and len(sample_file.read_text().splitlines()) >= 2 * CHUNK:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = sample_file.read_text().splitlines()
    assert 2 * CHUNK <= len(before) < NUM_PROBLEMS * NUM_SAMPLES

    subprocess.run(command(tiny_model_dir, data, resumed), env=environment(), cwd=REPO, check=True, timeout=600)
    after = sample_file.read_text().splitlines()
    assert after[: len(before)] == before                 # finished chunks kept, not regenerated
    assert samples(resumed, "mini") == samples(full, "mini")
    a, b = (json.loads((d / "results.json").read_text()) for d in (full, resumed))
    assert a["benchmarks"] == b["benchmarks"]
    assert b["config"]["temperature"] == 0.6 and b["config"]["max_new_tokens"] == 24   # protocol recorded
    assert (resumed / "results.md").is_file() and (resumed / "pass_at_k.png").stat().st_size > 0
