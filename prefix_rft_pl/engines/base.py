"""The protocol every rollout engine implements.

An engine knows nothing about prefixes, rewards or groups: a hybrid request is just
prompt ids + prefix ids with a smaller token budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

from prefix_rft_pl.types import GenerationRequest, Rollout


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings shared by all engines."""

    temperature: float = 1.0  # paper: rollout temperature 1.0
    top_p: float = 1.0
    top_k: int = -1           # -1: disabled


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Rollout]:
        """Sample every request `num_samples` times; rollouts of one request are contiguous."""
        ...

    def update_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Load the trainer's current weights (HF parameter names, full tensors)."""
        ...
