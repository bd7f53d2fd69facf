"""The data-parallel launcher's parts: the work split, the devices per shard, the merge of
the shards' sample files, and what a failed shard process reports."""

from __future__ import annotations

import json
import os
import sys

import pytest

from eval_harness.launcher import ShardError, run_shards, shard_devices, split_work
from eval_harness.store import SampleStore, chunk_plan, merge_shard_files, records_to_merge


def record(problem: int, sample: int, text: str = "") -> dict:
    return {"problem": problem, "sample": sample, "completion": text, "correct": False, "status": "ok"}


def test_split_work_is_disjoint_complete_and_balanced():
    work = [("aime24", k) for k in range(5)] + [("math500", k) for k in range(2)]
    shares = split_work(work, 3)
    assert shares == [[("aime24", 0), ("aime24", 3), ("math500", 1)],
                      [("aime24", 1), ("aime24", 4)],
                      [("aime24", 2), ("math500", 0)]]
    assert sorted(item for share in shares for item in share) == sorted(work)


def test_split_work_leaves_extra_shards_empty():
    assert split_work([("a", 0)], 2) == [[("a", 0)], []]


def test_chunks_do_not_depend_on_the_split():
    # a shard runs whole chunks of the one-process plan: same items, same chunk index, same seed
    plan = chunk_plan(num_problems=3, num_samples=2, chunk_size=4)
    assert plan == [[(0, 0), (0, 1), (1, 0), (1, 1)], [(2, 0), (2, 1)]]
    assert [plan[k] for share in split_work([0, 1], 2) for k in share] == plan


def test_shard_devices_one_engine_each():
    assert shard_devices(["0", "1", "2", "3"], 2, 1) == ["0", "1"]
    assert shard_devices(["4", "5", "6", "7"], 2, 2) == ["4,5", "6,7"]
    assert shard_devices([], 3, 1) == [None, None, None]          # CPU: every shard a process on CPU
    with pytest.raises(ValueError, match="needs 4 devices; 3 visible"):
        shard_devices(["0", "1", "2"], 2, 2)


def test_records_to_merge_adds_missing_once_in_plan_order():
    kept = [record(0, 0), record(0, 1)]
    shards = [record(2, 0, "r1"), record(0, 1, "dup of kept"), record(1, 1), record(1, 0), record(2, 0, "again")]
    merged = records_to_merge(kept, shards)
    assert [(r["problem"], r["sample"]) for r in merged] == [(1, 0), (1, 1), (2, 0)]
    assert merged[2]["completion"] == "r1"


def test_merge_shard_files_folds_them_into_the_benchmark_file(tmp_path):
    (tmp_path / "samples_b.jsonl").write_text(json.dumps(record(0, 0)) + "\n" + '{"problem": 0, "sa')  # cut by a kill
    (tmp_path / "samples_b.rank0.jsonl").write_text(json.dumps(record(0, 1)) + "\n" + json.dumps(record(2, 0)) + "\n")
    (tmp_path / "samples_b.rank1.jsonl").write_text(json.dumps(record(1, 0)) + "\n" + '{"prob')
    merge_shard_files(tmp_path, "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples_b.jsonl"]
    lines = [json.loads(line) for line in (tmp_path / "samples_b.jsonl").read_text().splitlines()]
    assert [(r["problem"], r["sample"]) for r in lines] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert SampleStore(tmp_path, "b").has_all([(0, 0), (0, 1), (1, 0), (2, 0)])


def test_merge_shard_files_without_shard_files_changes_nothing(tmp_path):
    merge_shard_files(tmp_path, "b")
    assert list(tmp_path.iterdir()) == []


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_failed_shard_is_named_with_its_log_and_the_others_finish(tmp_path):
    done = tmp_path / "done"
    logs = [tmp_path / "shard0.log", tmp_path / "shard1.log"]
    commands = [python(f"import time; time.sleep(0.5); open({str(done)!r}, 'w').write('ok')"),
                python("import sys; print('CUDA out of memory', file=sys.stderr); sys.exit(3)")]
    with pytest.raises(ShardError, match=r"(?s)shard 1 failed \(exit code 3\).*CUDA out of memory.*same command again"):
        run_shards([0, 1], commands, [dict(os.environ)] * 2, logs)
    assert done.read_text() == "ok"                       # shard 0 was not stopped by shard 1's failure


def test_shards_that_succeed_raise_nothing(tmp_path):
    run_shards([0, 1], [python("print('a')"), python("print('b')")], [dict(os.environ)] * 2,
               [tmp_path / "0.log", tmp_path / "1.log"])
    assert (tmp_path / "1.log").read_text() == "b\n"
