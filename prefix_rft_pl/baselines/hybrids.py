"""The rows beyond the paper's table (SPEC 3): what CHORD, SRFT and HPT add to one rollout
batch's update, as `StepTerms` (and, for HPT, the batch the RL update sees). Each row is a
`loss.hybrid` variant (a prefix_rft_pl.variants.Hybrid: Chord, SRFT, HPT, by class_path), decided
once in the config, that builds its step's terms itself; the loss math is in losses.py
(`chord_mu`, `chord_phi_weights`, `srft_*`, `hpt_sft_prompts`).

Sources (read, not copied):
- CHORD: modelscope/Trinity-RFT @ b458e2c26ff13b2f538ecbc819a2e0a40e98fc73,
  trinity/algorithm/policy_loss_fn/chord_policy_loss.py (`mix_chord`, `mu_schedule_function`,
  `sft_phi`); examples/mix_chord/mix_chord.yaml @ 041433056e9067e35a42a3943ecbaf89bef24518.
- SRFT and HPT: TsinghuaC3I/Unify-Post-Training @ ae332f5fa4dc8b4c3d3cd77ebc9cff3a3abab2d0,
  hpt/verl/verl/mix_src/mix_actor.py (`offline_loss_type` "srft" and "sft"),
  mix_core_alg.py (`compute_token_on_off_policy_srft_loss`, `compute_sft_pure_loss`),
  mix_trainer.py (`select_on_off_ada_balance`: the switch), exp_scripts/train.sh, train_srft.sh.
  SRFT's own authors' code was not found; HPT's repository ships SRFT as a baseline.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from torch import Tensor

from prefix_rft_pl import losses
from prefix_rft_pl.update.steps import StepTerms
from prefix_rft_pl.variants import Hybrid

if TYPE_CHECKING:
    from prefix_rft_pl.config import Settings
    from prefix_rft_pl.prefix import TrajectoryBatch
    from prefix_rft_pl.types import PromptItem


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

    def terms(self, iteration: int) -> tuple[StepTerms, dict[str, float]]:
        """At rollout batch `iteration`: (1 - mu) x the policy-gradient loss, mu x the
        (phi-weighted) token-mean CE on the step's demonstrations."""
        mu = losses.chord_mu(iteration, self.mu_warmup_steps, self.mu_decay_steps, self.mu_peak, self.mu_valley)
        weights = losses.chord_phi_weights if self.phi else None
        return StepTerms(sft_coef=mu, sft_weights=weights, rl_scale=1.0 - mu), {"train/chord_mu": mu}

    def step_terms(self, settings: Settings, iteration: int, items: list[PromptItem], rewards: Tensor,
                   tb: TrajectoryBatch):
        return tb, items, *self.terms(iteration)


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

    def step_terms(self, settings: Settings, iteration: int, items: list[PromptItem], rewards: Tensor,
                   tb: TrajectoryBatch):
        """Its weights on the rollouts' own tokens (from `rewards` [B, G]) and the exp(-H)-weighted
        CE on the demonstrations, at loss.demo_sft_coef."""
        weights = partial(losses.srft_rollout_weights, positive_coef=self.positive_coef,
                          negative_weight=self.negative_weight)
        terms = StepTerms(sft_coef=settings.loss.demo_sft_coef, sft_weights=losses.srft_demo_weights,
                          rollout_weights=weights, rollout_rewards=rewards.reshape(-1))
        return tb, items, terms, {}


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

    def step_terms(self, settings: Settings, iteration: int, items: list[PromptItem], rewards: Tensor,
                   tb: TrajectoryBatch):
        """The switch: prompts whose rollouts succeed at most `gate` times leave the RL update (their
        rows keep no response token in the batch the update sees) and keep their demonstration as a
        CE target; the other prompts lose theirs (no CE)."""
        switched = losses.hpt_sft_prompts(rewards, self.gate)                             # [B]
        keep = ~switched.repeat_interleave(settings.rollout.group_size)                   # [N]
        update_tb = replace(tb, mask=tb.mask & keep[:, None], prefix_mask=tb.prefix_mask & keep[:, None])
        targets = [item if sft else replace(item, demo_ids=[]) for item, sft in zip(items, switched.tolist())]
        terms = StepTerms(sft_coef=settings.loss.demo_sft_coef)
        return update_tb, targets, terms, {"train/hpt_sft_prompts": switched.float().mean().item()}
