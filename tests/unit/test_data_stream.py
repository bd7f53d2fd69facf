"""Order of the data stream: shuffling, subsets, rank split, epochs, resume positions."""

from __future__ import annotations

import json
import random
from itertools import islice

import pytest

from datamodules.sources import resolve_sources
from datamodules.stream import (
    Order,
    Position,
    buffer_shuffle,
    chunked,
    epoch_rows,
    rows_from,
    select_subset,
    subset_for,
)


@pytest.fixture
def sources(tmp_path):
    """Three jsonl files of 10, 0 and 13 rows (an empty file included)."""
    sizes = {"a.jsonl": 10, "b.jsonl": 0, "c.jsonl": 13}
    for name, n in sizes.items():
        (tmp_path / name).write_text("".join(json.dumps({"i": f"{name}{i}"}) + "\n" for i in range(n)))
    return resolve_sources(str(tmp_path / "*.jsonl"))


def uids(rows):
    return [raw.uid.rsplit("/", 1)[-1] for raw in rows]


def test_buffer_shuffle_is_a_seeded_permutation():
    items = list(range(100))
    once = list(buffer_shuffle(items, 10, random.Random(1)))
    assert sorted(once) == items and once != items
    assert once == list(buffer_shuffle(items, 10, random.Random(1)))
    assert list(buffer_shuffle(items, 0, random.Random(1))) == items


def test_buffer_shuffle_holds_at_most_buffer_size_items():
    pulled = []

    def source():
        for i in range(50):
            pulled.append(i)
            yield i

    out = buffer_shuffle(source(), 8, random.Random(0))
    next(out)
    assert len(pulled) == 9  # 8 buffered + the one that displaced the first output


@pytest.mark.parametrize("fraction, expected", [(0.01, 10), (0.1, 100), (1.0, 1000)])
def test_subset_fraction_is_exact_and_seeded(fraction, expected):
    chosen = select_subset(1000, fraction, seed=3)
    assert len(chosen) == expected and chosen <= set(range(1000))
    assert chosen == select_subset(1000, fraction, seed=3)
    if expected < 1000:
        assert chosen != select_subset(1000, fraction, seed=4)


def test_subset_count_and_bad_values():
    assert len(select_subset(1000, 7, seed=0)) == 7
    assert len(select_subset(5, 7, seed=0)) == 5
    with pytest.raises(ValueError):
        select_subset(10, 0.0, seed=0)
    with pytest.raises(ValueError):
        select_subset(10, 0, seed=0)


def test_subset_spans_sources_and_is_the_same_every_epoch(sources):
    subset = subset_for(sources, 0.5, seed=0)
    assert len(subset) == 12 and {s for s, _ in subset} == {0, 2}
    order = Order(seed=0, shuffle_buffer=4, subset=subset)
    epochs = [set(uids(epoch_rows(sources, order, e))) for e in range(3)]
    assert len(epochs[0]) == 12 and epochs[0] == epochs[1] == epochs[2]


def test_epochs_reshuffle_the_same_rows(sources):
    order = Order(seed=0, shuffle_buffer=5)
    e0, e1 = uids(epoch_rows(sources, order, 0)), uids(epoch_rows(sources, order, 1))
    assert len(e0) == 23 and sorted(e0) == sorted(e1) and e0 != e1
    assert e0 == uids(epoch_rows(sources, order, 0))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_complete_shares(sources, world_size):
    shares = [uids(epoch_rows(sources, Order(0, 5, rank, world_size), 0)) for rank in range(world_size)]
    flat = [u for share in shares for u in share]
    assert len(flat) == len(set(flat)) == 23
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_resume_from_a_position_continues_the_same_stream(sources):
    order = Order(seed=2, shuffle_buffer=6)
    full = list(islice(rows_from(sources, order, Position()), 60))  # runs into epoch 2
    for k in (0, 5, 23, 24, 41):
        position = full[k - 1][0] if k else Position()
        resumed = list(islice(rows_from(sources, order, position), 60 - k))
        assert [(p, r.uid) for p, r in resumed] == [(p, r.uid) for p, r in full[k:]]
    assert full[22][0] == Position(0, 23) and full[23][0] == Position(1, 1)


def test_stream_of_an_empty_share_is_an_error(tmp_path):
    (tmp_path / "one.jsonl").write_text('{"i": 0}\n')
    stream = rows_from(resolve_sources(str(tmp_path / "one.jsonl")), Order(0, 0, 1, 2), Position())
    with pytest.raises(ValueError, match="no rows"):
        next(stream)


def test_workers_render_interleaved_chunks_in_stream_order(sources):
    order = Order(seed=0, shuffle_buffer=5)
    full = [(p, r.uid) for p, r in islice(rows_from(sources, order, Position()), 40)]

    def render(raw):
        return raw.uid

    per_worker = [chunked(rows_from(sources, order, Position()), render, 4, w, 3) for w in range(3)]
    merged = []
    for n in range(10):  # a DataLoader takes chunks from workers round-robin
        merged.extend(next(per_worker[n % 3]))
    assert merged == full
