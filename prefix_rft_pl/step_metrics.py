"""Per-step rollout statistics logged by the module: rewards of ordinary and hybrid rollouts,
response and prefix lengths, and the realised prefix ratio L / |response|; and the step's
scored rollouts as plain data for callbacks (callbacks.CompletionSamples)."""

from __future__ import annotations

import torch
from torch import Tensor

from prefix_rft_pl.prefix import Trajectory, TrajectoryBatch
from prefix_rft_pl.reward_components import ScoredCompletions
from prefix_rft_pl.types import PromptDemoBatch, ScoredRollouts


def _mean_or(values: Tensor, default: float) -> Tensor:
    return values.mean() if values.numel() else torch.tensor(default)


def rollout_metrics(rewards: Tensor, is_hybrid: Tensor, tb: TrajectoryBatch) -> dict[str, Tensor]:
    """rewards, is_hybrid [B, G]; tb holds the same N = B * G trajectories, prompt-major."""
    hybrid_rows = is_hybrid.view(-1)                                          # [N]
    response_lens = tb.mask.sum(-1).float()                                   # [N]
    prefix_lens = tb.prefix_mask.sum(-1)[hybrid_rows].float()                 # [num hybrid]
    return {
        "reward/ordinary": _mean_or(rewards[~is_hybrid], float("nan")),
        "reward/hybrid": _mean_or(rewards[is_hybrid], float("nan")),
        "rollout/response_len": response_lens.mean(),
        "rollout/prefix_len": _mean_or(prefix_lens, 0.0),
        "rollout/prefix_ratio": _mean_or(prefix_lens / response_lens[hybrid_rows].clamp(min=1), 0.0),
    }


def scored_rollouts(batch: PromptDemoBatch, trajectories: list[Trajectory], texts: list[str],
                    scored: ScoredCompletions, advantages: Tensor) -> ScoredRollouts:
    """The step's N trajectories with their graded texts, scores and advantages [N]."""
    return ScoredRollouts(
        uids=[batch.items[t.prompt_index].uid for t in trajectories],
        prompt_ids=[t.prompt_ids for t in trajectories],
        prefix_lens=[len(t.prefix_ids) for t in trajectories],
        completions=list(texts),
        rewards={name: scores.values for name, scores in scored.components.items()},
        statuses={name: scores.statuses for name, scores in scored.components.items()},
        reward=scored.total,
        advantages=advantages.tolist())
