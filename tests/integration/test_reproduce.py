"""The reproduction harness end to end on the toy: two rows (SFT, and SFT+RFT from it), two
seeds, two steps each, killed with SIGKILL in the middle of the second row's training, then
run again with the same arguments: it finishes without redoing the first row, and its table
(and every sample behind it) equals an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def command(out: Path, policy: Path, task: dict) -> list[str]:
    return [sys.executable, "-m", "eval_harness", "reproduce", "--model", "toy", "--rows", "sft", "sft_rft",
            "--seeds", "0", "1", "--steps", "2", "--policy", str(policy), "--toy-task", str(Path(task["train"]).parent),
            f"--fit-arg=--data.init_args.train_files={task['train']}",
            f"--fit-arg=--data.init_args.val_files={task['heldout_easy']}",
            "--eval-set", "limit=10", "default_num_samples=2", "--out", str(out)]


def harness(out: Path, policy: Path, task: dict) -> subprocess.Popen:
    log = (out.parent / f"{out.name}.log").open("a")
    # a session of its own: the kill reaches the harness and the fit it is running, as a scheduler's would
    return subprocess.Popen(command(out, policy, task), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(proc: subprocess.Popen, out: Path) -> None:
    assert proc.wait(timeout=900) == 0, (out.parent / f"{out.name}.log").read_text()[-5000:]


def started(out: Path) -> list[str]:
    return [json.loads(line)["job"] for line in (out / "jobs.jsonl").read_text().splitlines()]


def samples(out: Path) -> dict[str, list[str]]:
    return {str(p.relative_to(out)): [json.loads(line)["completion"] for line in p.open()]
            for p in sorted(out.glob("*/*/eval/samples_*.jsonl"))}


def scores(table: dict) -> dict:
    return {row: [(r["seed"], r["scores"], r["pass_at_k"]) for r in data["runs"]]
            for row, data in table["rows"].items()}


def test_killed_in_the_second_row_resumes_without_redoing_the_first(tmp_path, tiny_model_dir, toy_task_files):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    finish(harness(whole, tiny_model_dir, toy_task_files), whole)

    proc = harness(killed, tiny_model_dir, toy_task_files)
    second = killed / "sft_rft" / "s0" / "train"
    deadline = time.time() + 600
    while not (second / "config.yaml").exists():  # the fit is set up: training under way
        assert proc.poll() is None and time.time() < deadline, "the harness ended before SFT+RFT's training"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (second / "hf_export" / "export_complete.json").exists()  # killed before the fit finished
    first = {p: p.stat().st_mtime_ns for p in [*killed.glob("sft/*/train/hf_export/export_complete.json"),
                                                *killed.glob("sft/*/eval/results.json")]}
    assert len(first) == 4  # both seeds of the first row trained and evaluated

    finish(harness(killed, tiny_model_dir, toy_task_files), killed)
    jobs = started(killed)
    for seed in (0, 1):  # the first row: trained and evaluated once
        assert jobs.count(f"fit:sft/s{seed}") == 1 and jobs.count(f"eval:sft/s{seed}") == 1
    assert jobs.count("fit:sft_rft/s0") == 2 and jobs.count("eval:sft_rft/s1") == 1
    assert {p: p.stat().st_mtime_ns for p in first} == first
    table, reference = (json.loads((out / "table.json").read_text()) for out in (killed, whole))
    assert list(table["rows"]) == ["sft", "sft_rft"] and scores(table) == scores(reference)
    assert table["command"].startswith("python -m eval_harness reproduce --model toy --rows sft sft_rft")
    assert samples(killed) == samples(whole) and len(samples(whole)) == 4 * 4  # 4 runs x 4 reported splits
    assert (killed / "table.md").is_file() and (killed / "table.png").is_file()
