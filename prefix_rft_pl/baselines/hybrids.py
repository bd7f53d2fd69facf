"""The rows beyond the paper's table (SPEC 3): what CHORD, SRFT and HPT add to one rollout
batch's update, as `StepTerms` (and, for HPT, the batch the RL update sees). The loss math is
in losses.py (`chord_mu`, `chord_phi_weights`, `srft_*`, `hpt_sft_prompts`); the row is the
`loss.hybrid` variant (prefix_rft_pl/variants.py: Chord, SRFT, HPT), decided here, once.

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

from torch import Tensor

from prefix_rft_pl import losses
from prefix_rft_pl.config import Settings
from prefix_rft_pl.prefix import TrajectoryBatch
from prefix_rft_pl.types import PromptItem
from prefix_rft_pl.update.steps import StepTerms
from prefix_rft_pl.variants import HPT, SRFT, Chord


def chord_terms(c: Chord, iteration: int) -> tuple[StepTerms, dict[str, float]]:
    """CHORD at rollout batch `iteration` (batches done, from 0): (1 - mu) x the policy-gradient
    loss, mu x the (phi-weighted) token-mean CE on the step's demonstrations."""
    mu = losses.chord_mu(iteration, c.mu_warmup_steps, c.mu_decay_steps, c.mu_peak, c.mu_valley)
    weights = losses.chord_phi_weights if c.phi else None
    return StepTerms(sft_coef=mu, sft_weights=weights, rl_scale=1.0 - mu), {"train/chord_mu": mu}


def srft_terms(srft: SRFT, sft_coef: float, rewards: Tensor) -> tuple[StepTerms, dict[str, float]]:
    """SRFT: its weights on the rollouts' own tokens (from `rewards` [B, G]) and the exp(-H)-weighted
    CE on the demonstrations, at `sft_coef`."""
    weights = partial(losses.srft_rollout_weights, positive_coef=srft.positive_coef,
                      negative_weight=srft.negative_weight)
    terms = StepTerms(sft_coef=sft_coef, sft_weights=losses.srft_demo_weights, rollout_weights=weights,
                      rollout_rewards=rewards.reshape(-1))
    return terms, {}


def hpt_split(hpt: HPT, settings: Settings, items: list[PromptItem], rewards: Tensor, tb: TrajectoryBatch
              ) -> tuple[TrajectoryBatch, list[PromptItem], StepTerms, dict[str, float]]:
    """HPT's switch: prompts whose rollouts succeed at most `gate` times leave the RL update (their
    rows keep no response token in the batch the update sees) and keep their demonstration as a
    CE target; the other prompts lose theirs (no CE)."""
    switched = losses.hpt_sft_prompts(rewards, hpt.gate)                        # [B]
    keep = ~switched.repeat_interleave(settings.rollout.group_size)                       # [N]
    update_tb = replace(tb, mask=tb.mask & keep[:, None], prefix_mask=tb.prefix_mask & keep[:, None])
    targets = [item if sft else replace(item, demo_ids=[]) for item, sft in zip(items, switched.tolist())]
    terms = StepTerms(sft_coef=settings.loss.demo_sft_coef)
    return update_tb, targets, terms, {"train/hpt_sft_prompts": switched.float().mean().item()}


def step_terms(settings: Settings, iteration: int, items: list[PromptItem], rewards: Tensor, tb: TrajectoryBatch
               ) -> tuple[TrajectoryBatch, list[PromptItem], StepTerms, dict[str, float]]:
    """The batch the update sees, the CE targets, the step's terms and their metrics, for the row
    being trained; without CHORD, SRFT or HPT: the batch, the items and loss.demo_sft_coef."""
    hybrid = settings.loss.hybrid
    if isinstance(hybrid, Chord):
        return tb, items, *chord_terms(hybrid, iteration)
    if isinstance(hybrid, SRFT):
        return tb, items, *srft_terms(hybrid, settings.loss.demo_sft_coef, rewards)
    if isinstance(hybrid, HPT):
        return hpt_split(hybrid, settings, items, rewards, tb)
    if hybrid is not None:
        raise ValueError(f"model.loss.hybrid: no step terms for {type(hybrid).__name__}")
    return tb, items, StepTerms(sft_coef=settings.loss.demo_sft_coef), {}
