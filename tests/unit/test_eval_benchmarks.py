"""Benchmark loading: registry names, --data-dir files, a user's own file."""

from __future__ import annotations

import json

import pytest

from eval_harness.benchmarks import REGISTRY, _joined, benchmark_name, load_benchmark
from eval_harness.store import chunk_plan, chunk_seed, group_runs


def test_registry_covers_the_seven_benchmarks():
    assert set(REGISTRY) == {"aime24", "aime25", "amc", "amc23", "math500", "minerva", "olympiadbench"}
    assert _joined(["$3$", "5"]) == ["3, 5"]


def test_data_dir_and_own_file(tmp_path):
    rows = [{"id": "a", "problem": "1+1?", "answer": ["2"]}, {"problem": "2+2?", "answer": "4"}]
    (tmp_path / "aime24.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = load_benchmark("aime24", tmp_path)
    assert [(p.id, p.answers) for p in problems] == [("a", ["2"]), ("1", ["4"])]
    own = tmp_path / "mine.jsonl"
    own.write_text(json.dumps(rows[0]) + "\n")
    assert benchmark_name(str(own)) == "mine" and load_benchmark(str(own))[0].problem == "1+1?"
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("gsm8k", tmp_path)


def test_chunks_have_fixed_composition_and_seeds():
    plan = chunk_plan(3, 2, 4)
    assert plan == [[(0, 0), (0, 1), (1, 0), (1, 1)], [(2, 0), (2, 1)]]
    assert group_runs(plan[0]) == [(0, 2), (1, 2)]
    assert chunk_seed(0, "amc", 1) == chunk_seed(0, "amc", 1) != chunk_seed(0, "amc", 2)
