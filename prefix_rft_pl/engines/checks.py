"""Trainer/engine agreement on generated tokens: the stale-weight check and truncated IS.

The engine samples from pi_old as it holds it; the trainer recomputes pi_old's log-probs
itself (SPEC section 2.5). On generated tokens the two must agree up to numerics. A large
gap means the engine runs other weights than the trainer (a missed or broken weight sync),
which silently turns on-policy training off-policy. Prefix tokens were never sampled by
the engine, so it has no log-probs for them: both functions ignore them, whatever the
engine tensor holds there (zeros, NaN).
"""

from __future__ import annotations

import torch
from torch import Tensor


class StaleWeightsError(RuntimeError):
    """The rollout engine's log-probs disagree with the trainer's beyond the threshold."""

    def __init__(self, message: str | None = None):
        super().__init__(message or "the rollout engine is running stale or wrong weights: its log-probs on "
                                    "generated tokens disagree with the trainer's")


def logprob_mismatch(
    trainer_logprobs: Tensor,  # [N, T] trainer's log-probs of the response tokens
    engine_logprobs: Tensor,   # [N, T] engine's log-probs; meaningful on generated tokens only
    generated_mask: Tensor,    # [N, T] True = token sampled by the engine (not prefix, not padding)
) -> tuple[float, float]:
    """(mean, max) of |trainer - engine| over generated tokens; (0, 0) when there are none."""
    if not generated_mask.any():
        return 0.0, 0.0
    diff = (trainer_logprobs.float() - engine_logprobs.float())[generated_mask].abs()  # [num generated]
    return float(diff.mean()), float(diff.max())


def truncated_is_weights(
    old_logprobs: Tensor,      # [N, T] trainer's pi_old log-probs
    engine_logprobs: Tensor,   # [N, T] engine's log-probs of the tokens it sampled
    generated_mask: Tensor,    # [N, T] True = token sampled by the engine
    cap: float,                # upper bound of the weight (TIS truncation)
) -> Tensor:                   # [N, T] min(pi_old / pi_engine, cap) on generated tokens, exactly 1 elsewhere
    """Truncated importance-sampling weights correcting for the engine's sampling distribution.

    Prefix tokens (demonstration, not sampled) and padding get weight exactly 1: TIS never
    touches them (SPEC section 2.5).
    """
    log_ratio = torch.where(generated_mask, old_logprobs.float() - engine_logprobs.float(), 0.0)  # [N, T]
    weights = torch.exp(log_ratio).clamp(max=cap)                                          # [N, T]
    return torch.where(generated_mask, weights, torch.ones_like(weights))
