"""Loss math of Prefix-RFT and its baselines: small pure functions. The variants that choose
among them (prefix rule, aggregation) are objects in variants.py.

Every per-token loss has the form -W_t * log pi(y_t) in gradient (SPEC section 1); the
functions below differ only in W_t. Aggregation divides by normalisers computed over the
whole optimisation batch, so the gradient does not depend on how the batch is split into
micro-batches (or across data-parallel ranks).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from prefix_rft_pl.config import Clip
    from prefix_rft_pl.variants import PrefixRule


def group_advantages(
    rewards: Tensor,                 # [B, G] one group of G trajectories per prompt
    baseline_mask: Tensor | None = None,  # [B, G] True = trajectory enters the group mean
    scale_by_std: bool = False,
    eps: float = 1e-6,
) -> Tensor:                         # [B, G]
    """Dr. GRPO advantage A_i = r_i - mean_j r_j (no std, no length normalisation).

    `baseline_mask` restricts the mean to some trajectories (the reference code's option of
    a baseline from the ordinary rollouts only); `scale_by_std` is GRPO's std division.
    """
    if baseline_mask is None:
        baseline_mask = torch.ones_like(rewards, dtype=torch.bool)
    weights = baseline_mask.to(rewards.dtype)                                  # [B, G]
    count = weights.sum(-1, keepdim=True).clamp(min=1)                         # [B, 1]
    mean = (rewards * weights).sum(-1, keepdim=True) / count                   # [B, 1]
    advantages = rewards - mean                                                # [B, G]
    if scale_by_std:
        std = rewards.std(-1, keepdim=True) if rewards.shape[-1] > 1 else torch.zeros_like(mean)
        advantages = advantages / (std + eps)
    return advantages


def clipped_surrogate(
    logprobs: Tensor,      # [N, T] current policy
    old_logprobs: Tensor,  # [N, T] policy before this step's first update
    advantages: Tensor,    # [N, T] per token (prefix tokens outside the kept set are 0)
    mask: Tensor,          # [N, T] True = token counts
    eps_low: float = 0.2,
    eps_high: float = 0.2,  # clip-higher: eps_high > eps_low
    dual_clip: float | None = None,  # c > 1: bound the loss of A < 0 tokens by -c * A
) -> Tensor:               # [N, T] per-token loss, aggregated elsewhere
    ratio = torch.exp(logprobs - old_logprobs)                                 # [N, T]
    unclipped = -advantages * ratio                                            # [N, T]
    clipped = -advantages * ratio.clamp(1 - eps_low, 1 + eps_high)             # [N, T]
    loss = torch.maximum(unclipped, clipped)                                   # pessimistic bound
    if dual_clip is not None:
        capped = torch.minimum(loss, -dual_clip * advantages)                  # [N, T]
        loss = torch.where(advantages < 0, capped, loss)
    return loss * mask


def shaped_surrogate(
    logprobs: Tensor,      # [N, T] current policy
    advantages: Tensor,    # [N, T]
    mask: Tensor,          # [N, T]
    gamma: float = 0.1,
) -> Tensor:               # [N, T]
    """LUFFY's policy shaping on off-policy (demonstration) tokens, no clipping:
    the ratio is replaced by f(p) = p / (p + gamma), p = pi_theta(y_t)."""
    prob = logprobs.exp()                                                      # [N, T]
    return -advantages * (prob / (prob + gamma)) * mask


def sft_loss(
    logprobs: Tensor,      # [N, T]
    mask: Tensor,          # [N, T] True = demonstration token
    weight: float | Tensor = 1.0,  # a constant, or per-token weights [N, T] (CHORD's p(1 - p), SRFT's exp(-H),
                                   # SRFT's W on the policy's own tokens: -W log pi, no ratio, no clip)
) -> Tensor:               # [N, T] cross-entropy with weight `weight` on every counted token
    return -weight * logprobs * mask


def aggregate_constant(per_token: Tensor, num_sequences: int, max_response_tokens: int) -> Tensor:
    """Dr. GRPO: sum over all tokens / (trajectories in the optimisation batch x max length)."""
    return per_token.sum() / (num_sequences * max_response_tokens)


def aggregate_token_mean(per_token: Tensor, num_tokens: int) -> Tensor:
    """Sum over tokens / number of counted tokens in the whole optimisation batch."""
    return per_token.sum() / max(num_tokens, 1)


def aggregate_seq_mean_token_mean(per_token: Tensor, mask: Tensor, num_sequences: int) -> Tensor:
    """Mean over the batch's sequences of each sequence's token mean."""
    lengths = mask.sum(-1).clamp(min=1)                                        # [n]
    return (per_token.sum(-1) / lengths).sum() / max(num_sequences, 1)


def token_losses(
    logprobs: Tensor,       # [N, T] current policy
    old_logprobs: Tensor,   # [N, T]
    advantages: Tensor,     # [N, T] per token; prefix tokens outside the kept set already 0
    generated_mask: Tensor,  # [N, T] True = token the engine generated
    prefix_mask: Tensor,    # [N, T] True = demonstration prefix token
    prefix_rule: PrefixRule,  # the loss on prefix tokens (prefix_rft_pl.variants)
    clip: Clip,             # eps_low, eps_high, dual_clip
) -> Tensor:                # [N, T]
    """Per-token loss of a hybrid batch: the clipped surrogate on generated tokens, and on
    prefix tokens the rule of the row being trained (PPOPrefix: the same clipped surrogate;
    ShapedPrefix: LUFFY's A * p / (p + gamma); SFTPrefix: cross-entropy, advantage unused)."""
    loss = clipped_surrogate(logprobs, old_logprobs, advantages, generated_mask, clip.eps_low, clip.eps_high,
                             clip.dual_clip)
    return loss + prefix_rule.token_loss(logprobs, old_logprobs, advantages, prefix_mask, clip)


# ---------------------------------------------------------------- baselines' extra terms (SPEC 3)


def aggregate_token_sum(per_token: Tensor, max_response_tokens: int) -> Tensor:
    """LUFFY's / ReLIFT's `loss_remove_token_mean`: sum over the rank's tokens / max length.

    No division by the number of trajectories: the data-parallel gradient average then
    divides by the number of ranks, so the scale grows with the trajectories per rank
    (LUFFY: 64 per GPU per mini-batch), as in their code.
    """
    return per_token.sum() / max_response_tokens


def entropy_bonus(
    entropy: Tensor,       # [N, T] current-policy entropy, differentiable
    mask: Tensor,          # [N, T] True = token counts
    coef: float,
) -> Tensor:               # [N, T] per-token loss -coef * H_t (maximises entropy), aggregated elsewhere
    return -coef * entropy * mask


def low_var_kl(
    logprobs: Tensor,      # [N, T] current policy
    ref_logprobs: Tensor,  # [N, T] frozen reference policy
    mask: Tensor,          # [N, T] True = token counts
    coef: float = 1.0,
    bound: float = 10.0,
) -> Tensor:               # [N, T] coef * k3 estimate of KL(pi || pi_ref), clamped to [-bound, bound]
    """verl's `low_var_kl` (Schulman's k3): r = pi_ref / pi, kl = r - log r - 1 >= 0."""
    log_ratio = ref_logprobs - logprobs                                       # [N, T] log r
    kl = (torch.exp(log_ratio) - log_ratio - 1).clamp(-bound, bound)          # [N, T]
    return coef * kl * mask


def regularisers(
    logprobs: Tensor,             # [N, T] current policy
    entropy: Tensor | None,       # [N, T] differentiable entropy, or None (no bonus)
    ref_logprobs: Tensor | None,  # [N, T] reference policy, or None (no KL)
    mask: Tensor,                 # [N, T] True = response token
    num_tokens: float,            # response tokens of the optimisation mini-batch, all ranks
    entropy_coef: float,
    kl_coef: float,
) -> Tensor:                      # scalar
    """Token means over the mini-batch's response tokens of the entropy bonus and the KL term."""
    per_token = torch.zeros_like(logprobs)
    if entropy is not None:
        per_token = per_token + entropy_bonus(entropy, mask, entropy_coef)
    if ref_logprobs is not None:
        per_token = per_token + low_var_kl(logprobs, ref_logprobs, mask, kl_coef)
    return aggregate_token_mean(per_token, num_tokens)


# ---------------------------------------------------------------- hybrids beyond the paper's table (SPEC 3)


def chord_mu(step: int, warmup_steps: int, decay_steps: int, peak: float, valley: float) -> float:
    """CHORD's mu(t), the SFT share of (1 - mu) x GRPO + mu x SFT: linear from 0 to `peak` over
    `warmup_steps`, then a cosine from `peak` to `valley` over `decay_steps`, then `valley`."""
    if step < warmup_steps:
        return step / warmup_steps * peak
    if step >= warmup_steps + decay_steps:
        return valley
    progress = (step - warmup_steps) / decay_steps
    return valley + (peak - valley) * 0.5 * (1 + math.cos(math.pi * progress))


def chord_phi_weights(
    logprobs: Tensor,        # [n, T] current policy on demonstration tokens
    entropy: Tensor | None,  # [n, T] unused
    mask: Tensor,            # [n, T] True = demonstration token
) -> Tensor:                 # [n, T] CHORD-phi's per-token CE weight p (1 - p), no gradient
    prob = logprobs.detach().exp()                                             # [n, T]
    return prob * (1 - prob) * mask


def row_mean_entropy(
    entropy: Tensor,  # [n, T] per-token entropy
    mask: Tensor,     # [n, T] True = token counts
) -> Tensor:          # [n] each row's token mean, no gradient
    return (entropy.detach() * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def srft_demo_weights(
    logprobs: Tensor,   # [n, T] unused (the shape)
    entropy: Tensor,    # [n, T] current-policy entropy on the demonstration tokens
    mask: Tensor,       # [n, T] True = demonstration token
) -> Tensor:            # [n, T] SRFT's CE weight exp(-H) on every token of a demonstration, no gradient
    """H is the demonstration's token-mean entropy under the current policy (stop-gradient): the
    demonstration's weight falls as the policy grows uncertain on it."""
    return torch.exp(-row_mean_entropy(entropy, mask))[:, None] * mask       # [n, T]


def srft_rollout_weights(
    rewards: Tensor,    # [n] each rollout's reward
    entropy: Tensor,    # [n, T] current-policy entropy
    mask: Tensor,       # [n, T] True = generated token
    positive_coef: float = 0.1,
    negative_weight: float = 1.0,
    success: float = 1.0,
) -> Tensor:            # [n, T] SRFT's weight W on the policy's own tokens, no gradient
    """Rollouts whose reward is `success`: W = positive_coef x exp(H) (H the rollout's token-mean
    entropy, stop-gradient); the others: W = -negative_weight. No group baseline."""
    positive = positive_coef * torch.exp(row_mean_entropy(entropy, mask))     # [n]
    weight = torch.where(rewards == success, positive, torch.full_like(positive, -negative_weight))
    return weight[:, None] * mask                                              # [n, T]


def hpt_sft_prompts(
    rewards: Tensor,    # [B, G] rewards of each prompt's rollouts
    gate: int = 0,
    success: float = 1.0,
) -> Tensor:            # [B] bool, True = the prompt takes HPT's SFT update instead of RL
    """HPT's switch: a prompt whose rollouts solve it at most `gate` times (reward == success)
    is learnt from its demonstration by SFT; the others by RL on their rollouts."""
    return (rewards == success).sum(-1) <= gate
