"""The loss variants, each decided once in the config (`class_path`): the rule that weighs
demonstration-prefix tokens and the aggregation of per-token losses into one scalar.

Each variant carries everything that differs between rows: its per-token loss (or its
normaliser and reduction) and what it needs from the batch. The math is in losses.py; a
variant only picks the pure function and its constants. An unknown `class_path` is a
config error (jsonargparse checks the subclass), never a fall-through to a default.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from torch import Tensor

from prefix_rft_pl import losses

if TYPE_CHECKING:
    from prefix_rft_pl.config import Clip


class PrefixRule:
    """How the loss treats demonstration-prefix tokens (generated tokens always take the
    clipped surrogate)."""

    uses_advantage = True
    """False when the rule ignores the advantage (SFT): rows with prefix tokens then always
    have a gradient, and the old log-probs are not needed on them."""

    def token_loss(self, logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, prefix_mask: Tensor,
                   clip: Clip) -> Tensor:  # [N, T], 0 off the prefix
        raise NotImplementedError


class PPOPrefix(PrefixRule):
    """Prefix-RFT (SPEC 2.7): the same clipped surrogate as generated tokens."""

    def token_loss(self, logprobs, old_logprobs, advantages, prefix_mask, clip):
        return losses.clipped_surrogate(logprobs, old_logprobs, advantages, prefix_mask, clip.eps_low, clip.eps_high,
                                        clip.dual_clip)


class ShapedPrefix(PrefixRule):
    """LUFFY: A * f(p), f(p) = p / (p + gamma), no clipping."""

    def __init__(self, gamma: float = 0.1):
        """
        Args:
            gamma: LUFFY's policy-shaping constant (0.1).
        """
        if gamma <= 0:
            raise ValueError(f"model.prefix.rule.gamma must be > 0, got {gamma}")
        self.gamma = gamma

    def token_loss(self, logprobs, old_logprobs, advantages, prefix_mask, clip):
        return losses.shaped_surrogate(logprobs, advantages, prefix_mask, self.gamma)


class SFTPrefix(PrefixRule):
    """SFT (and RL w/ SFT loss at weight 0): cross-entropy on the prefix, advantage unused."""

    uses_advantage = False

    def __init__(self, weight: float = 1.0):
        """
        Args:
            weight: weight of the cross-entropy on every prefix token.
        """
        self.weight = weight

    def token_loss(self, logprobs, old_logprobs, advantages, prefix_mask, clip):
        return losses.sft_loss(logprobs, prefix_mask, self.weight)


class Aggregation:
    """Per-token losses [N, T] -> one scalar, with a normaliser counted over the whole
    (all-rank) optimisation mini-batch, so the gradient does not depend on the split."""

    counts = "trajectories"
    """What the normaliser counts over all ranks: "trajectories", "tokens" or "nothing"."""

    def __call__(self, per_token: Tensor, mask: Tensor, normaliser: float, max_response_tokens: int) -> Tensor:
        raise NotImplementedError


class DrGRPOConstant(Aggregation):
    """Dr. GRPO (SPEC 2.7): sum / (trajectories x max_response_tokens)."""

    def __call__(self, per_token, mask, normaliser, max_response_tokens):
        return losses.aggregate_constant(per_token, normaliser, max_response_tokens)


class TokenMean(Aggregation):
    """Sum / response tokens of the mini-batch."""

    counts = "tokens"

    def __call__(self, per_token, mask, normaliser, max_response_tokens):
        return losses.aggregate_token_mean(per_token, normaliser)


class SeqMeanTokenMean(Aggregation):
    """Mean over trajectories of each trajectory's token mean."""

    def __call__(self, per_token, mask, normaliser, max_response_tokens):
        return losses.aggregate_seq_mean_token_mean(per_token, mask, normaliser)


class TokenSum(Aggregation):
    """LUFFY's / ReLIFT's `loss_remove_token_mean`: the rank's token sum / max_response_tokens."""

    counts = "nothing"

    def __call__(self, per_token, mask, normaliser, max_response_tokens):
        return losses.aggregate_token_sum(per_token, max_response_tokens)


class Hybrid:
    """A row beyond the paper's table (SPEC 3) that changes what a step's update weighs, chosen in
    loss.hybrid by class_path: prefix_rft_pl.baselines.hybrids.Chord, SRFT or HPT. Each builds its
    step's terms itself (`step_terms`); the math is in losses.py."""

    dense = False
    """True when a term weighs every response token whatever its advantage (no row is skipped)."""
    empties_rows = False
    """True when the RL update sees some rows emptied (their tokens masked out): they are skipped."""
    needs_sft_coef = False
    """True when the row's CE needs loss.demo_sft_coef > 0; False when it must be 0 (its own coefficient)."""

    def step_terms(self, settings, iteration: int, items: list, rewards: Tensor, tb):
        """(the batch the RL update sees, the CE targets, the step's StepTerms, metrics) at rollout
        batch `iteration` (batches done, from 0), from the step's items, rewards [B, G] and batch."""
        raise NotImplementedError


def init_parameters(cls: type) -> set[str]:
    """The names `cls(...)` takes: its `__init__`'s arguments, and its base's where it passes
    **kwargs on."""
    names: set[str] = set()
    for base in cls.__mro__:
        if base is object or "__init__" not in vars(base):
            continue
        parameters = inspect.signature(base.__init__).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def describe(variant: object) -> dict:
    """A variant as the config spells it: {class_path, init_args} (plain data for hparams); the
    init_args are the attributes named as `__init__` arguments (other attributes are state)."""
    cls = type(variant)
    names = init_parameters(cls)
    args = {k: v for k, v in vars(variant).items() if k in names}
    out: dict = {"class_path": f"{cls.__module__}.{cls.__qualname__}"}
    return {**out, "init_args": args} if args else out

