"""The optimiser steps of one rollout batch: `ppo_epochs x mini_batches` steps, each a
gradient accumulated micro-batch by micro-batch over the rows that have one; and the
demonstration cross-entropy of the baselines (RL w/ SFT loss, UFT's hints, ReLIFT's step).

Under FSDP2 every forward, backward and count below is a collective: every rank runs as
many micro-batches as the rank with the most (padding micro-batches add no gradient), and
normalisers are counted over all ranks. The loss math is in losses.py; the variants
(prefix rule, aggregation) are the settings' objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from prefix_rft_pl import losses
from prefix_rft_pl.distributed import mini_batch_slices
from prefix_rft_pl.prefix import Trajectory, TrajectoryBatch, pad_trajectories
from prefix_rft_pl.update.forward import Passes
from prefix_rft_pl.update.rows import mini_batch_prompts

TokenWeights = Callable[[Tensor, Tensor | None, Tensor], Tensor]  # (logprobs, entropy, mask) [n, T] -> weights [n, T]
RolloutWeights = Callable[[Tensor, Tensor, Tensor], Tensor]  # (rewards [n], entropy, mask [n, T]) -> weights [n, T]


@dataclass(frozen=True)
class StepTerms:
    """What one rollout batch's update weighs besides the settings' per-token loss (the rows
    beyond the paper's table set them: prefix_rft_pl/baselines/hybrids.py)."""

    sft_coef: float = 0.0
    """Coefficient of the token-mean CE on the items' demonstrations (loss.demo_sft_coef; CHORD: mu(t))."""
    sft_weights: TokenWeights | None = None
    """Per-token weights of that CE (CHORD: p (1 - p); SRFT: exp(-H)); None: 1."""
    rl_scale: float = 1.0
    """Factor of the policy-gradient loss (CHORD: 1 - mu(t))."""
    rollout_weights: RolloutWeights | None = None
    """SRFT: the weights W of -W log pi on generated tokens, instead of the clipped surrogate."""
    rollout_rewards: Tensor | None = None
    """[N] rewards of the trajectories, for `rollout_weights`."""


def optimise(passes: Passes, optimizer, tb: TrajectoryBatch, old_logprobs: Tensor | None, token_advantages: Tensor,
             is_weights: Tensor | None, items, ref_logprobs: Tensor | None, update_rows: Tensor, scheduler=None,
             terms: StepTerms | None = None):
    """The optimiser steps on rows `update_rows` ([N] bool; the others have no gradient). Without
    `old_logprobs` (one step per batch), the forward's own, detached. `items`: the targets of the
    demonstration CE; `scheduler`: the learning-rate schedule, stepped after every optimiser step;
    `terms`: the step's CE coefficient and the hybrids' terms (default: loss.demo_sft_coef alone).
    Returns the loss, the grad norm and the last mini-batch's detached log-probs and entropies
    ([N, T], NaN off its rows)."""
    s = passes.settings
    terms = StepTerms(sft_coef=s.loss.demo_sft_coef) if terms is None else terms
    rewards, rollout = terms.rollout_rewards, terms.rollout_weights
    n = len(tb.response_ids)
    total, grad_norm = torch.zeros(()), torch.zeros(())
    for _ in range(s.update.ppo_epochs):
        for rows in mini_batch_slices(n, s.update.mini_batches):  # the same count on every rank
            total, current = mini_batch_backward(
                passes, tb.select(rows), None if old_logprobs is None else old_logprobs[rows], token_advantages[rows],
                None if is_weights is None else is_weights[rows], None if ref_logprobs is None else ref_logprobs[rows],
                update_rows[rows], terms.rl_scale, None if rollout is None else (rollout, rewards[rows]))
            if terms.sft_coef > 0:  # on the demonstrations (UFT: hints) of this mini-batch's prompts
                total = total + demo_sft_backward(passes, items[mini_batch_prompts(rows, s.rollout.group_size)],
                                                  terms.sft_coef, token_weights=terms.sft_weights)
            grad_norm = optimizer_step(passes.model, optimizer, s.optim.max_grad_norm)
            if scheduler is not None:
                scheduler.step()
    if hasattr(grad_norm, "full_tensor"):
        grad_norm = grad_norm.full_tensor()
    return total, grad_norm.detach().cpu(), current


def mini_batch_backward(passes: Passes, tb: TrajectoryBatch, old_logprobs: Tensor | None, token_advantages: Tensor,
                        is_weights: Tensor | None, ref_logprobs: Tensor | None, update_rows: Tensor,
                        rl_scale: float = 1.0, rollout: tuple[RolloutWeights, Tensor] | None = None):
    """Accumulate the gradient of one optimiser step over rows `update_rows` (normalised over all
    rows); returns the mini-batch loss and the rows' detached log-probs and entropies. `rl_scale`
    multiplies the policy-gradient loss (CHORD); `rollout` (SRFT: its weights and the rows'
    rewards [n]) replaces the clipped surrogate on generated tokens by -W log pi."""
    s = passes.settings
    loss_s = s.loss
    denominator = normaliser(passes, tb)
    regularised = loss_s.entropy_coef > 0 or ref_logprobs is not None  # token-mean terms: entropy bonus, KL
    num_tokens = passes.ranks.mean_count(float(tb.mask.sum())) if regularised else 0.0
    total, index = torch.zeros(()), update_rows.nonzero().squeeze(-1)          # [n] rows with a gradient
    index = index[tb.attention_mask[index].sum(-1).argsort(stable=True)]  # by length: micro-batches pad less
    current = torch.full(tb.mask.shape, float("nan")), torch.full(tb.mask.shape, float("nan"))
    # no row on any rank: one padding micro-batch still makes the gradients 0 (AdamW steps on them)
    for part in passes.micro_batches(len(index)) or [None]:
        if part is None:  # padding micro-batch: matches the other ranks' collectives, adds no gradient
            logprobs, _ = passes.logprobs(passes.model, passes.padding_batch(), False)
            passes.backward(logprobs.sum() * 0.0)
            continue
        rows = index[part]
        mb = tb.select(rows)
        logprobs, entropy = passes.logprobs(passes.model, mb,
                                            loss_s.entropy_coef > 0 or old_logprobs is None or rollout is not None,
                                            loss_s.entropy_coef > 0)
        if old_logprobs is None:
            current[0][rows], current[1][rows] = logprobs.detach().cpu(), entropy.detach().cpu()
        old = logprobs.detach() if old_logprobs is None else old_logprobs[rows].to(logprobs.device)
        generated, prefix = mb.generated_mask.to(logprobs.device), mb.prefix_mask.to(logprobs.device)
        advantages = token_advantages[rows].to(logprobs.device)
        if rollout is None:
            per_token = losses.token_losses(logprobs, old, advantages, generated, prefix, s.prefix.rule, loss_s.clip)
        else:  # SRFT: its weights on the policy's own tokens, the prefix rule on the demonstration's
            weights = rollout[0](rollout[1][rows].to(logprobs.device), entropy, generated)
            per_token = (losses.sft_loss(logprobs, generated, weights)  # -W log pi
                         + s.prefix.rule.token_loss(logprobs, old, advantages, prefix, loss_s.clip))
        if is_weights is not None:
            per_token = per_token * is_weights[rows].to(per_token.device)
        loss = loss_s.aggregation(per_token, mb.mask.to(per_token.device), denominator, s.rollout.max_response_tokens)
        if rl_scale != 1.0:  # CHORD's (1 - mu); the regularisers below are not scaled
            loss = loss * rl_scale
        if regularised:
            ref = None if ref_logprobs is None else ref_logprobs[rows].to(logprobs.device)
            loss = loss + losses.regularisers(logprobs, entropy if loss_s.entropy_coef > 0 else None, ref,
                                              mb.mask.to(logprobs.device), num_tokens, loss_s.entropy_coef,
                                              loss_s.kl_coef)
        passes.backward(loss)
        total += loss.detach().cpu()
    return total, current


def normaliser(passes: Passes, tb: TrajectoryBatch) -> float:
    """The aggregation's denominator over the whole (all-rank) optimisation mini-batch."""
    if passes.settings.loss.aggregation.counts == "tokens":
        return passes.ranks.mean_count(float(tb.mask.sum()))
    return passes.ranks.mean_count(len(tb.response_ids))  # trajectories, summed over ranks


def optimizer_step(model: torch.nn.Module, optimizer, max_grad_norm: float) -> Tensor:
    """Clip and step. `optimizer` is Lightning's wrapper (the step counts towards `global_step` /
    `max_steps`) or the bare torch optimiser (it does not: ReLIFT's SFT step)."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def demo_sft_backward(passes: Passes, items, weight: float, entropy_coef: float = 0.0,
                      token_weights: TokenWeights | None = None) -> Tensor:
    """Backward of weight x token-mean cross-entropy on the items' (first) demonstrations, each
    token weighted by `token_weights` (CHORD's p (1 - p), SRFT's exp(-H); None: 1), minus
    entropy_coef x their token-mean entropy (ReLIFT's SFT step)."""
    demos = [Trajectory(i, item.prompt_ids, item.demo_ids[0], [], None, "stop") for i, item in enumerate(items)
             if item.demo_ids]  # within the budget: the data module leaves longer demonstrations out
    tb = pad_trajectories(demos, passes.pad_id) if demos else None
    num_tokens = passes.ranks.mean_count(int(tb.mask.sum()) if demos else 0)  # token mean over all ranks
    total = torch.zeros(())
    for rows in passes.micro_batches(len(demos)):  # also when this rank has none: the others may
        mb = tb.select(rows) if rows is not None else passes.padding_batch()
        logprobs, entropy = passes.logprobs(passes.model, mb, entropy_coef > 0 or token_weights is not None,
                                            entropy_grad=entropy_coef > 0)
        mask = mb.mask.to(logprobs.device)
        per_token = losses.sft_loss(logprobs, mask, weight if token_weights is None
                                    else weight * token_weights(logprobs, entropy, mask))
        if entropy_coef > 0:
            per_token = per_token + losses.entropy_bonus(entropy, mask, entropy_coef)
        loss = losses.aggregate_token_mean(per_token, num_tokens)
        passes.backward(loss if rows is not None else loss * 0.0)
        total += loss.detach().cpu() if rows is not None else 0.0
    return total
