"""The data-parallel ranks as the update sees them: who this rank is, and the few
collectives it needs (counts, sums, rows and objects gathered in rank order).

`OneRank` is one process (tests, one device); `LightningRanks` wraps a LightningModule's
collectives under a multi-rank strategy. Under FSDP2 every forward and backward is a
collective too, so the passes use these counts to run as many micro-batches on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from prefix_rft_pl.distributed import all_gather_objects, gather_rows


class Ranks(Protocol):
    rank: int
    world: int
    device: torch.device

    def gather_counts(self, count: int) -> Tensor:
        """[world] `count` of every rank."""
        ...

    def mean_count(self, count: float) -> float:
        """sum over ranks of `count` / world: a local loss divided by it, then averaged over the
        ranks by the gradient reduction, is divided by the global count, for any split."""
        ...

    def gather_rows(self, rows: Tensor, counts: Tensor) -> Tensor:
        """Every rank's `rows` [n_r, ...] concatenated in rank order (`counts` = n_r of each)."""
        ...

    def gather_objects(self, objects: list) -> list:
        """Every rank's list, concatenated in rank order."""
        ...


@dataclass(frozen=True)
class OneRank:
    """One process: every collective is the identity."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def gather_counts(self, count: int) -> Tensor:
        return torch.tensor([count])

    def mean_count(self, count: float) -> float:
        return float(count)

    def gather_rows(self, rows: Tensor, counts: Tensor) -> Tensor:
        return rows

    def gather_objects(self, objects: list) -> list:
        return list(objects)


class LightningRanks:
    """The ranks of a LightningModule's trainer (world > 1), through the module's collectives."""

    def __init__(self, module):
        self._module = module
        self.rank, self.world = module.global_rank, module.trainer.world_size

    @property
    def device(self) -> torch.device:
        return self._module.device

    def gather_counts(self, count: int) -> Tensor:
        return self._module.all_gather(torch.tensor(count, device=self.device)).cpu().view(-1)

    def mean_count(self, count: float) -> float:
        total = self._module.trainer.strategy.reduce(torch.tensor(float(count), device=self.device), reduce_op="sum")
        return float(total) / self.world

    def gather_rows(self, rows: Tensor, counts: Tensor) -> Tensor:
        return gather_rows(self._module.all_gather, rows, counts, self.device)

    def gather_objects(self, objects: list) -> list:
        return all_gather_objects(objects)
