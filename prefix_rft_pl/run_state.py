"""What a checkpoint must hold, beyond weights, optimiser and schedule, for a resumed run to
continue exactly as if it had never stopped: the random states of this process (Python,
NumPy, torch on CPU and on every accelerator), one per data-parallel rank.

The rest of a step's randomness is derived, not drawn: prefix lengths and UFT's hints from
(seed, step, rank), the random prefix selection from (seed, step), vLLM's samples from
per-request seeds (seed, step, rank, request), the data order from the data module's own
state. The HF engine samples from torch's global generator, which is restored here.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def capture_random_states() -> dict:
    """This process's random states, as plain data (loads with torch's weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict) -> None:
    """Set this process's random states to `states` (from `capture_random_states`)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def sampling_seed(seed: int, step: int, rank: int) -> int:
    """The rollout engine's sampling seed of one step on one rank (31 bits)."""
    return (seed * 1_000_003 + step * 9_973 + rank * 101) % (2**31 - 1)
