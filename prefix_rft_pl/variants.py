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
    loss.hybrid: its constants and what the update must know of it; the step's terms are built in
    prefix_rft_pl/baselines/hybrids.py, the math is in losses.py."""

    dense = False
    """True when a term weighs every response token whatever its advantage (no row is skipped)."""
    empties_rows = False
    """True when the RL update sees some rows emptied (their tokens masked out): they are skipped."""
    needs_sft_coef = False
    """True when the row's CE needs loss.demo_sft_coef > 0; False when it must be 0 (its own coefficient)."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ValueError(f"model.loss.hybrid.{key}: {message}")


class Chord(Hybrid):
    """CHORD: (1 - mu) x the policy-gradient loss + mu x a token-mean CE on the step's
    demonstrations, each token weighted by p (1 - p) with `phi`; mu(t) linear from 0 to mu_peak
    over mu_warmup_steps, then a cosine to mu_valley over mu_decay_steps (t: rollout batches done)."""

    def __init__(self, mu_warmup_steps: int = 200, mu_decay_steps: int = 400, mu_peak: float = 0.5,
                 mu_valley: float = 0.02, phi: bool = True):
        """
        Args:
            mu_warmup_steps: rollout batches of mu's linear warm-up (Trinity-RFT's example: 200).
            mu_decay_steps: rollout batches of mu's cosine decay (Trinity-RFT's example: 400).
            mu_peak: mu after the warm-up (0.5).
            mu_valley: mu after the decay (0.02).
            phi: CHORD-phi's per-token weight p (1 - p) on the CE; False: plain CE (CHORD-mu).
        """
        _check(mu_warmup_steps >= 0 and mu_decay_steps >= 0, "mu_warmup_steps",
               f"steps must be >= 0, got {mu_warmup_steps}, {mu_decay_steps}")
        for key, value in (("mu_peak", mu_peak), ("mu_valley", mu_valley)):
            _check(0 <= value <= 1, key, f"must be in [0, 1], got {value}")
        self.mu_warmup_steps, self.mu_decay_steps = mu_warmup_steps, mu_decay_steps
        self.mu_peak, self.mu_valley, self.phi = mu_peak, mu_valley, phi


class SRFT(Hybrid):
    """SRFT, as HPT's repository implements it: the policy's own rollouts take -W log pi with
    W = positive_coef x exp(H) when correct and -negative_weight when not (H the rollout's
    token-mean entropy, stop-gradient; no baseline, no ratio); loss.demo_sft_coef weighs a CE on
    the demonstrations whose tokens carry exp(-H) (H the demonstration's)."""

    dense = True
    needs_sft_coef = True

    def __init__(self, positive_coef: float = 0.1, negative_weight: float = 1.0):
        """
        Args:
            positive_coef: coefficient of exp(H) on correct rollouts (HPT's srft branch: 0.1).
            negative_weight: weight of incorrect rollouts' log-likelihood, pushed down (1).
        """
        for key, value in (("positive_coef", positive_coef), ("negative_weight", negative_weight)):
            _check(value >= 0, key, f"must be >= 0, got {value}")
        self.positive_coef, self.negative_weight = positive_coef, negative_weight


class HPT(Hybrid):
    """HPT: a prompt whose G rollouts are correct at most `gate` times leaves the RL update (its
    rows are emptied) and its demonstration takes loss.demo_sft_coef x a token-mean CE."""

    empties_rows = True
    needs_sft_coef = True

    def __init__(self, gate: int = 0):
        """
        Args:
            gate: HPT's switch_gate, the most correct rollouts of a prompt that still switches it to SFT (0).
        """
        _check(gate >= 0, "gate", f"must be >= 0, got {gate}")
        self.gate = gate


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

