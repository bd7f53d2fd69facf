"""Samples on disk: one JSON line per graded sample, appended a chunk at a time and fsync'ed,
so a killed run loses at most the chunk in flight.

Work is cut into chunks of fixed composition (problem-major, then sample index), each
generated under its own seed, so that a resumed run regenerates exactly the missing
chunks and gets the samples an uninterrupted run would have got. A data-parallel shard
writes a file of its own, folded into the benchmark's file when the shards are done.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path


def chunk_plan(num_problems: int, num_samples: int, chunk_size: int) -> list[list[tuple[int, int]]]:
    """(problem index, sample index) pairs in problem-major order, cut every `chunk_size`."""
    items = [(p, s) for p in range(num_problems) for s in range(num_samples)]
    return [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]


def chunk_seed(seed: int, benchmark: str, chunk: int) -> int:
    """A seed per (run seed, benchmark, chunk), stable across processes and Python versions."""
    digest = hashlib.sha256(f"{seed}/{benchmark}/{chunk}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def group_runs(items: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Consecutive samples of one problem -> (problem index, count): one request each."""
    runs: list[tuple[int, int]] = []
    for problem, _ in items:
        if runs and runs[-1][0] == problem:
            runs[-1] = (problem, runs[-1][1] + 1)
        else:
            runs.append((problem, 1))
    return runs


def read_records(path: Path) -> list[tuple[str, dict]]:
    """(line, record) for every complete line of a samples file; the tail of a killed write is dropped."""
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append((line, json.loads(line)))
        except json.JSONDecodeError:
            continue
    return out


def records_to_merge(kept: Iterable[dict], shard_records: Iterable[dict]) -> list[dict]:
    """The shard records whose (problem, sample) is not among `kept`, once each, in plan order.

    Plan order is (problem, sample), the order in which a fresh one-process run writes them.
    """
    seen = {(r["problem"], r["sample"]) for r in kept}
    new: dict[tuple[int, int], dict] = {}
    for r in shard_records:
        key = (r["problem"], r["sample"])
        if key not in seen:
            new.setdefault(key, r)
    return [new[key] for key in sorted(new)]


def merge_shard_files(out: Path, name: str) -> None:
    """Fold `samples_<name>.rank*.jsonl` into `samples_<name>.jsonl`, then delete them.

    The merged lines are appended and fsync'ed before any shard file goes, so a kill in
    between leaves duplicates (read once, merged once), never a loss.
    """
    shard_files = sorted(out.glob(f"samples_{name}.rank*.jsonl"))
    if not shard_files:
        return
    store = SampleStore(out, name)  # drops a cut tail of the benchmark's file before appending
    main = out / f"samples_{name}.jsonl"
    kept = [r for _, r in read_records(main)] if main.is_file() else []
    store.append(records_to_merge(kept, (r for path in shard_files for _, r in read_records(path))))
    for path in shard_files:
        path.unlink()


class SampleStore:
    """The graded samples of one benchmark, from every `samples_<name>*.jsonl` in `out`.

    This process appends to `samples_<name>.jsonl`, or `samples_<name>.rank<r>.jsonl` for
    data-parallel shard r (other shards may be appending to theirs meanwhile). Lines cut
    short by a kill are dropped on load.
    """

    def __init__(self, out: Path, name: str, shard: int | None = None):
        self.path = out / (f"samples_{name}.jsonl" if shard is None else f"samples_{name}.rank{shard}.jsonl")
        self.records: dict[tuple[int, int], dict] = {}
        for path in sorted(out.glob(f"samples_{name}.jsonl")) + sorted(out.glob(f"samples_{name}.rank*.jsonl")):
            valid = self._read(path)
            if path == self.path:
                self._rewrite(valid)

    def _read(self, path: Path) -> list[str]:
        valid = read_records(path)
        for _, record in valid:
            self.records[(record["problem"], record["sample"])] = record
        return [line for line, _ in valid]

    def _rewrite(self, lines: list[str]) -> None:
        """Drop broken lines before appending, so a new record never lands on a cut one."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, self.path)

    def has_all(self, items: Iterable[tuple[int, int]]) -> bool:
        return all(item in self.records for item in items)

    def append(self, records: list[dict]) -> None:
        with self.path.open("a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
        for r in records:
            self.records[(r["problem"], r["sample"])] = r

    def counts(self, num_problems: int, num_samples: int) -> tuple[list[int], list[int]]:
        """(correct, samples) per problem; raises if a sample is missing."""
        missing = [(p, s) for p in range(num_problems) for s in range(num_samples) if (p, s) not in self.records]
        if missing:
            raise RuntimeError(f"{self.path.name}: {len(missing)} samples missing, e.g. {missing[:3]}")
        correct = [sum(bool(self.records[(p, s)]["correct"]) for s in range(num_samples)) for p in range(num_problems)]
        return correct, [num_samples] * num_problems

    def status_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records.values():
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out
