"""Settings groups of the rows beyond the paper's table (SPEC 3): CHORD, SRFT, HPT. Frozen
dataclasses checked at construction, as the groups of config.py (which holds them in Settings);
the loss math is in losses.py, a step's terms in baselines/hybrids.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefix_rft_pl.config import Loss


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ValueError(f"model.{key}: {message}")


@dataclass(frozen=True)
class Chord:
    """CHORD (SPEC 3): loss = (1 - mu) x the policy-gradient loss + mu x a CE on the step's
    demonstrations (token mean, each token weighted by p (1 - p) with `phi`); mu(t) warms up
    linearly to mu_peak, then decays by a cosine to mu_valley (t: rollout batches done)."""

    mu_warmup_steps: int = 200
    """Rollout batches of mu's linear warm-up from 0 to mu_peak (Trinity-RFT's example: 200)."""
    mu_decay_steps: int = 400
    """Rollout batches of mu's cosine decay from mu_peak to mu_valley (Trinity-RFT's example: 400)."""
    mu_peak: float = 0.5
    """mu after the warm-up (Trinity-RFT's example: 0.5)."""
    mu_valley: float = 0.02
    """mu after the decay (Trinity-RFT's example: 0.02)."""
    phi: bool = True
    """CHORD-phi's per-token weight p (1 - p) on the CE; False: plain CE (CHORD-mu)."""

    def __post_init__(self):
        for key in ("mu_warmup_steps", "mu_decay_steps"):
            _require(getattr(self, key) >= 0, f"chord.{key}", f"must be >= 0, got {getattr(self, key)}")
        for key in ("mu_peak", "mu_valley"):
            _require(0 <= getattr(self, key) <= 1, f"chord.{key}", f"must be in [0, 1], got {getattr(self, key)}")


@dataclass(frozen=True)
class SRFT:
    """SRFT (SPEC 3), as HPT's repository implements it: the policy's own rollouts take
    -W log pi with W = positive_coef x exp(H) when correct and -negative_weight when not (H the
    rollout's token-mean entropy, stop-gradient; no baseline, no ratio); loss.demo_sft_coef
    weighs a CE on the demonstrations whose tokens carry exp(-H) (H the demonstration's)."""

    positive_coef: float = 0.1
    """Coefficient of exp(H) on correct rollouts (HPT's srft branch: 0.1)."""
    negative_weight: float = 1.0
    """Weight of incorrect rollouts' log-likelihood, pushed down (HPT's srft branch: 1)."""

    def __post_init__(self):
        for key in ("positive_coef", "negative_weight"):
            _require(getattr(self, key) >= 0, f"srft.{key}", f"must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class HPT:
    """HPT (SPEC 3): a prompt whose G rollouts are correct at most `gate` times leaves the RL
    update (its rollouts drop out) and its demonstration takes loss.demo_sft_coef x a token-mean CE."""

    gate: int = 0
    """HPT's switch_gate: the most correct rollouts of a prompt that still switches it to SFT (0)."""

    def __post_init__(self):
        _require(self.gate >= 0, "hpt.gate", f"must be >= 0, got {self.gate}")


def check_hybrids(loss: Loss, chord: Chord | None, srft: SRFT | None, hpt: HPT | None) -> None:
    """The rows beyond the paper's table: one at a time, each with the CE coefficient it needs."""
    named = [name for name, group in (("chord", chord), ("srft", srft), ("hpt", hpt)) if group is not None]
    if len(named) > 1:
        raise ValueError(f"model.{named[0]} and model.{named[1]}: one of chord, srft, hpt at a time")
    if chord is not None and loss.demo_sft_coef > 0:
        raise ValueError("model.loss.demo_sft_coef: CHORD's CE coefficient is mu(t) (model.chord); set it to 0")
    if (srft is not None or hpt is not None) and loss.demo_sft_coef <= 0:
        raise ValueError(f"model.loss.demo_sft_coef: model.{named[0]} needs a CE coefficient > 0 (its SFT term)")
