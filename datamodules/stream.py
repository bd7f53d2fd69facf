"""The order in which a rank sees rows: a pure function of (sources, seed, epoch, rank).

Per epoch e: the sources are put in an order drawn from (seed, e); their rows (optionally
only a seeded subset) pass through a seeded shuffle buffer; rank r of W keeps rows
r, r + W, r + 2W, ... of that stream. Every rank computes the same stream, so the ranks'
shares are disjoint and together complete, whatever the number of files (this is what
`datasets.distributed.split_dataset_by_node` does when files cannot be split evenly; here
it is done always, so the split never depends on the file count). Each rank reads all
rows but parses and tokenises only its own.

A rank's place in the stream is a `Position(epoch, offset)`: `offset` rows of its share of
`epoch` are behind it. Resuming replays the (cheap, unparsed) stream up to the position;
no shuffle buffer has to be saved, and nothing is repeated or skipped. Epochs follow one
another without end; training is bounded by steps.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import TypeVar

from datamodules.sources import RawRow, Source, count_rows, iter_source, source_name

T = TypeVar("T")


@dataclass(frozen=True)
class Position:
    epoch: int = 0
    offset: int = 0  # rows of this rank's share of `epoch` already consumed


@dataclass(frozen=True)
class Order:
    """Everything that fixes the order of a rank's rows."""

    seed: int = 0
    shuffle_buffer: int = 0          # 0 or 1: no shuffling (file order)
    rank: int = 0
    world_size: int = 1
    subset: frozenset[tuple[int, int]] | None = None  # (source, row) pairs kept (None: all)


def buffer_shuffle(items: Iterable[T], buffer_size: int, rng: random.Random) -> Iterator[T]:
    """Shuffle a stream holding at most `buffer_size` items (a full shuffle if the stream fits)."""
    if buffer_size <= 1:
        yield from items
        return
    buffer: list[T] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        i = rng.randrange(buffer_size)
        yield buffer[i]
        buffer[i] = item
    rng.shuffle(buffer)
    yield from buffer


def select_subset(num_rows: int, subset: int | float, seed: int) -> frozenset[int]:
    """Seeded choice of rows for the data-subset ablations: a fraction (0, 1] or a count."""
    if isinstance(subset, float) and not 0.0 < subset <= 1.0:
        raise ValueError(f"subset fraction must be in (0, 1], got {subset}")
    if isinstance(subset, int) and subset < 1:
        raise ValueError(f"subset count must be >= 1, got {subset}")
    k = max(1, round(subset * num_rows)) if isinstance(subset, float) else min(subset, num_rows)
    return frozenset(random.Random(f"subset/{seed}").sample(range(num_rows), k))


def subset_for(sources: list[Source], subset: int | float | None, seed: int) -> frozenset[tuple[int, int]] | None:
    """The kept rows as (source index, row index) pairs; rows are numbered across sources in
    their configured order, so the subset does not depend on the epoch's source order."""
    if subset is None:
        return None
    counts = [count_rows(s) for s in sources]
    starts = [sum(counts[:i]) for i in range(len(counts))]
    chosen = select_subset(sum(counts), subset, seed)
    pairs = ((bisect.bisect_right(starts, g) - 1, g) for g in chosen)
    return frozenset((i, g - starts[i]) for i, g in pairs)


def _kept_rows(source: Source, index: int, subset: frozenset[tuple[int, int]] | None) -> Iterator[RawRow]:
    rows = iter_source(source)
    if subset is None:
        return rows
    return (raw for row, raw in enumerate(rows) if (index, row) in subset)


def epoch_rows(sources: list[Source], order: Order, epoch: int) -> Iterator[RawRow]:
    """This rank's rows of one epoch, in order."""
    rng = random.Random(f"order/{order.seed}/{epoch}")
    source_order = list(range(len(sources)))
    rng.shuffle(source_order)
    rows: Iterable[RawRow] = chain.from_iterable(_kept_rows(sources[i], i, order.subset) for i in source_order)
    rows = buffer_shuffle(rows, order.shuffle_buffer, rng)
    return islice(rows, order.rank, None, order.world_size)


def rows_from(sources: list[Source], order: Order, start: Position) -> Iterator[tuple[Position, RawRow]]:
    """Endless (position after the row, row) pairs from `start`, epoch after epoch."""
    epoch, skip = start.epoch, start.offset
    while True:
        num_rows = 0
        for num_rows, raw in enumerate(epoch_rows(sources, order, epoch), 1):
            if num_rows > skip:
                yield Position(epoch, num_rows), raw
        if num_rows == 0:
            names = ", ".join(source_name(s) for s in sources)
            kept = " (of the subset kept)" if order.subset is not None else ""
            raise ValueError(f"rank {order.rank} of {order.world_size} has no rows in epoch {epoch}: "
                             f"{names} hold{'s' if len(sources) == 1 else ''} fewer rows{kept} than there are ranks")
        epoch, skip = epoch + 1, 0


def chunked(
    stream: Iterator[tuple[Position, RawRow]],
    render: Callable[[RawRow], T],
    chunk_rows: int,
    worker: int = 0,
    num_workers: int = 1,
) -> Iterator[list[tuple[Position, T]]]:
    """Worker `worker` of `num_workers` renders chunks worker, worker + W, ... of the stream.

    A DataLoader reads its workers round-robin, so the chunks arrive in stream order; every
    worker walks the whole (unparsed) stream and renders only its own chunks.
    """
    out: list[tuple[Position, T]] = []
    for n, (position, raw) in enumerate(stream):
        mine = (n // chunk_rows) % num_workers == worker
        if mine:
            out.append((position, render(raw)))
        if mine and (n + 1) % chunk_rows == 0:
            yield out
            out = []
