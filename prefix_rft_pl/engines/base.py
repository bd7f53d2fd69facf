"""The protocol every rollout engine implements, everything its callers use: generation,
weights (held or shared, pushed, verified), memory (sleep, wake up) and shutdown. Callers
never probe an engine with hasattr or isinstance.

An engine knows nothing about prefixes, rewards or groups: a hybrid request is just
prompt ids + prefix ids with a smaller token budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from prefix_rft_pl.types import GenerationRequest, Rollout


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings shared by all engines."""

    temperature: float = 1.0  # paper: rollout temperature 1.0
    top_p: float = 1.0
    top_k: int = -1           # -1: disabled
    seed: int | None = None   # per-request seeds (seed + request index) where the engine takes them (vLLM);
    # None: the engine's own generator. HFEngine samples from torch's global generator either way.


@runtime_checkable
class RolloutEngine(Protocol):
    holds_weights: bool
    """True: the engine samples from its own copy of the weights, which the trainer pushes after
    every update (`update_weights`) and verifies before training on a rollout
    (`pop_weights_fingerprint`). False: it samples from the trainer's live parameters."""
    dtype: torch.dtype | None
    """The dtype the engine computes in (pushed weights are cast to it); None: the policy's."""

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Rollout]:
        """Sample every request `num_samples` times; rollouts of one request are contiguous."""
        ...

    def update_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Load the trainer's current weights (HF parameter names, full tensors)."""
        ...

    def pop_weights_fingerprint(self) -> dict[str, dict] | None:
        """The fingerprint of the weights the last `generate` sampled from, once; None when there
        is nothing to verify (live weights, or fingerprinting off)."""
        ...

    def sleep(self) -> None:
        """Free accelerator memory for the update (a no-op where there is no sleep mode)."""
        ...

    def wake_up(self) -> None:
        """Reallocate what `sleep` freed."""
        ...

    def close(self) -> None:
        """Shut down and free memory (before the trainer's process group goes)."""
        ...


class LiveWeights:
    """The protocol's weight and memory methods for an engine that samples from the trainer's
    live parameters (HFEngine, test engines): nothing to push, verify, free or shut down."""

    holds_weights = False
    dtype = None

    def update_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Nothing to do: the engine samples from the trainer's own parameters."""

    def pop_weights_fingerprint(self) -> None:
        return None

    def sleep(self) -> None:
        pass

    def wake_up(self) -> None:
        pass

    def close(self) -> None:
        pass
