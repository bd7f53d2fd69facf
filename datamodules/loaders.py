"""Iterables handed to Lightning: endless training batches with their stream positions, and
one pass over a held-out set.

Skipped rows, and demonstrations left out of kept rows, stay visible on an endless stream:
they are counted by reason as they are met (the module logs the counts every step,
`PromptDemoDataModule.skip_counts`), and the first skip of each reason is warned about once,
naming its file and row.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from datamodules.items import DEMO_REASONS, Renderer, Skipped
from datamodules.sources import Source
from datamodules.stream import Order, Position, chunked, epoch_rows, rows_from
from prefix_rft_pl.types import PromptDemoBatch, PromptItem

log = logging.getLogger(__name__)


def _identity(x):
    return x


def _collate(items: list[PromptItem]) -> PromptDemoBatch:
    return PromptDemoBatch(list(items))


def count_skip(skipped: Counter, skip: Skipped) -> None:
    """Count a skipped row or demonstration under its reason; warn at the first one of that reason."""
    skipped[skip.reason] += 1
    if skipped[skip.reason] == 1:
        what = "demonstrations" if skip.reason in DEMO_REASONS else "rows"
        log.warning("skipping %s: %s (%s); further %s skipped for %r are only counted (metric data/skipped_%s)",
                    what, skip.where, skip.detail, what, skip.reason, skip.reason)


class _TrainChunks(torch.utils.data.IterableDataset):
    """Rendered chunks of a rank's endless stream; each DataLoader worker renders its own."""

    def __init__(self, sources: list[Source], order: Order, start: Position, render: Renderer, chunk_rows: int):
        self.sources, self.order, self.start = sources, order, start
        self.render, self.chunk_rows = render, chunk_rows

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        stream = rows_from(self.sources, self.order, self.start)
        return chunked(stream, self.render, self.chunk_rows, worker, num_workers)


@dataclass
class TrainBatches:
    """Endless `PromptDemoBatch`es of `batch_size` prompts, starting at `start`.

    `on_batch(batch, position)` is called as each batch is handed out: `position` is where
    this rank's stream stands once the batch is consumed. Skipped rows are counted in
    `skipped` (shared with the data module) as they are met, the first of each reason warned
    about (`count_skip`), and summarised in the log at each epoch end.
    """

    sources: list[Source]
    order: Order
    render: Renderer
    batch_size: int
    start: Callable[[], Position]
    on_batch: Callable[[PromptDemoBatch, Position], None]
    skipped: Counter = field(default_factory=Counter)
    num_workers: int = 0

    def __iter__(self) -> Iterator[PromptDemoBatch]:
        start = self.start()
        dataset = _TrainChunks(self.sources, self.order, start, self.render, chunk_rows=self.batch_size)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, num_workers=self.num_workers, collate_fn=_identity
        )
        items: list[PromptItem] = []
        epoch, last_item_epoch = start.epoch, start.epoch
        for chunk in loader:
            for position, result in chunk:
                if position.epoch != epoch:
                    self._epoch_done(epoch, last_item_epoch, start.epoch)
                    epoch = position.epoch
                for skip in result.skips:
                    count_skip(self.skipped, skip)
                if result.item is None:
                    continue
                items.append(result.item)
                last_item_epoch = epoch
                if len(items) == self.batch_size:
                    batch = PromptDemoBatch(items)
                    self.on_batch(batch, position)
                    yield batch
                    items = []

    def _epoch_done(self, epoch: int, last_item_epoch: int, start_epoch: int) -> None:
        summary = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        log.info("rank %d finished data epoch %d; rows skipped so far: %s", self.order.rank, epoch, summary)
        if last_item_epoch < epoch and epoch > start_epoch:  # a full epoch gave nothing: never will
            raise ValueError(f"a whole data epoch without a usable row on rank {self.order.rank}; skipped: {summary}")


class _HeldOutItems(torch.utils.data.IterableDataset):
    """One pass over a rank's share of a held-out set (file order), items only."""

    def __init__(self, sources: list[Source], order: Order, render: Renderer, skipped: Counter):
        self.sources, self.order, self.render, self.skipped = sources, order, render, skipped

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        for n, raw in enumerate(epoch_rows(self.sources, self.order, epoch=0)):
            if n % num_workers != worker:
                continue
            result = self.render(raw)
            for skip in result.skips:
                count_skip(self.skipped, skip)  # counted in the main process only when num_workers == 0
            if result.item is not None:
                yield result.item


def held_out_loader(sources: list[Source], order: Order, render: Renderer, batch_size: int,
                    num_workers: int, skipped: Counter) -> torch.utils.data.DataLoader:
    dataset = _HeldOutItems(sources, order, render, skipped)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
