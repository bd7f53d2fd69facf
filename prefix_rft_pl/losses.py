"""Loss math of Prefix-RFT and its baselines: small pure functions, no configuration objects.

Every per-token loss has the form -W_t * log pi(y_t) in gradient (SPEC section 1); the
functions below differ only in W_t. Aggregation divides by normalisers computed over the
whole optimisation batch, so the gradient does not depend on how the batch is split into
micro-batches (or across data-parallel ranks).
"""

from __future__ import annotations

import torch
from torch import Tensor


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
    weight: float = 1.0,
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
    prefix_rule: str = "ppo",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    shaping_gamma: float = 0.1,
    prefix_sft_weight: float = 1.0,
) -> Tensor:                # [N, T]
    """Per-token loss of a hybrid batch: the clipped surrogate on generated tokens, and on
    prefix tokens the rule of the row being trained:
      "ppo"    Prefix-RFT: the same clipped surrogate (same weight as generated tokens);
      "shaped" LUFFY: A * p / (p + gamma), no clipping;
      "sft"    SFT / UFT: cross-entropy with weight `prefix_sft_weight`, advantage unused.
    """
    loss = clipped_surrogate(logprobs, old_logprobs, advantages, generated_mask, eps_low, eps_high, dual_clip)
    if prefix_rule == "ppo":
        prefix = clipped_surrogate(logprobs, old_logprobs, advantages, prefix_mask, eps_low, eps_high, dual_clip)
    elif prefix_rule == "shaped":
        prefix = shaped_surrogate(logprobs, advantages, prefix_mask, shaping_gamma)
    elif prefix_rule == "sft":
        prefix = sft_loss(logprobs, prefix_mask, prefix_sft_weight)
    else:
        raise ValueError(f"prefix_rule must be 'ppo', 'shaped' or 'sft', got {prefix_rule!r}")
    return loss + prefix


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


def aggregate(
    kind: str,                 # constant (Dr. GRPO), token_mean, token_sum, seq_mean_token_mean
    per_token: Tensor,         # [N, T]
    mask: Tensor,              # [N, T] True = response token
    normaliser: float,         # trajectories (constant, seq_mean_token_mean) or tokens (token_mean), all ranks
    max_response_tokens: int,  # the constant of Dr. GRPO and of token_sum
) -> Tensor:                   # scalar
    """The aggregation chosen by `kind` (the module's `aggregation`)."""
    if kind == "constant":
        return aggregate_constant(per_token, normaliser, max_response_tokens)
    if kind == "token_mean":
        return aggregate_token_mean(per_token, normaliser)
    if kind == "token_sum":
        return aggregate_token_sum(per_token, max_response_tokens)
    return aggregate_seq_mean_token_mean(per_token, mask, normaliser)


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
