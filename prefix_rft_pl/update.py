"""The passes of one rollout batch over the policy, micro-batch by micro-batch: the no-grad
log-prob pass, the prefix-token selection, and the optimiser steps (ppo_epochs x mini_batches,
each a gradient accumulated over the rows that have one).

Under FSDP2 every forward, backward and count below is a collective: every rank runs as
many micro-batches as the rank with the most (padding micro-batches add no gradient), and
normalisers are counted over all ranks. Not pure: functions of the module (`module` is the
PrefixRFTModule), kept out of module.py so that it stays wiring; the loss math is in
losses.py.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prefix_rft_pl import losses, passes
from prefix_rft_pl.distributed import mini_batch_slices
from prefix_rft_pl.prefix import TrajectoryBatch, pad_trajectories, select_prefix_tokens


def gather_counts(module, count: int) -> Tensor:
    """[world] `count` of every data-parallel rank (a collective when world > 1)."""
    if module._trainer is None or module.trainer.world_size == 1:
        return torch.tensor([count])
    return module.all_gather(torch.tensor(count, device=module.device)).cpu().view(-1)


def global_mean_count(module, count: float) -> float:
    """sum over ranks of `count` / world: a local loss divided by it, then averaged over the
    ranks by the gradient reduction, is divided by the global count, for any split."""
    if module._trainer is None or module.trainer.world_size == 1:
        return float(count)
    total = module.trainer.strategy.reduce(torch.tensor(float(count), device=module.device), reduce_op="sum")
    return float(total) / module.trainer.world_size


def micro_batches(module, n: int) -> list[slice | None]:
    """Row slices of `micro_batch_size`, then None (a padding micro-batch) up to the largest
    count of any rank: under FSDP2 every forward/backward is a collective, so ranks holding
    fewer trajectories must still run as many of them."""
    from prefix_rft_pl.distributed import padded_micro_batches

    size = module.hparams.micro_batch_size
    counts = gather_counts(module, -(-n // size))
    return padded_micro_batches(n, size, int(counts.max()))


def padding_batch(module) -> TrajectoryBatch:
    """One trajectory of one pad token: the input of a padding micro-batch (loss x 0)."""
    from prefix_rft_pl.prefix import Trajectory

    pad = module.tokenizer.pad_token_id
    return pad_trajectories([Trajectory(0, [pad], [pad], [], None, "stop")], pad)


def forward_logprobs(module, tb: TrajectoryBatch, with_entropy: bool, grad: bool, model=None, rows=None):
    """Log-probs (and entropies) of every response token under `model` (default: the policy),
    micro-batch by micro-batch; with `rows` ([N] bool), of those rows only (0, entropy NaN, elsewhere)."""
    from prefix_rft_pl.forward import response_logprobs

    if rows is not None and not rows.all():
        lp, ent = forward_logprobs(module, tb.select(rows), with_entropy, grad, model)
        return passes.scatter_rows(lp, rows, 0.0), None if ent is None else passes.scatter_rows(ent, rows, float("nan"))
    model = module.policy if model is None else model
    outs, ents = [], []
    with torch.set_grad_enabled(grad):
        for rows in micro_batches(module, len(tb.response_ids)):
            mb = tb.select(rows) if rows is not None else padding_batch(module)
            lp, ent = response_logprobs(model, mb, module.hparams.temperature,
                                        module.hparams.logprob_chunk_size, with_entropy)
            if rows is None:
                continue  # a padding micro-batch: only there to match the other ranks' collectives
            outs.append(lp.cpu())
            ents.append(ent.cpu() if ent is not None else None)
    if not outs:  # no rows on this rank
        return torch.zeros(tb.mask.shape), torch.zeros(tb.mask.shape) if with_entropy else None
    return torch.cat(outs), torch.cat(ents) if with_entropy else None


def select_prefix(module, entropy: Tensor, prefix_mask: Tensor) -> Tensor:
    """Rank prefix tokens over the whole optimisation batch, across data-parallel ranks."""
    hp = module.hparams
    width = hp.max_response_tokens
    ent = torch.zeros(entropy.shape[0], width)
    pm = torch.zeros(entropy.shape[0], width, dtype=torch.bool)
    ent[:, : entropy.shape[1]], pm[:, : entropy.shape[1]] = entropy, prefix_mask
    counts = gather_counts(module, entropy.shape[0])                           # [W] rows per rank
    if len(counts) > 1:
        from prefix_rft_pl.distributed import gather_rows

        ent = gather_rows(module.all_gather, ent, counts, module.device)        # [sum N, T_max], rank order
        pm = gather_rows(module.all_gather, pm, counts, module.device)
    generator = torch.Generator().manual_seed(hp.seed * 1_000_003 + module.global_step)
    kept = select_prefix_tokens(ent, pm, hp.prefix_token_keep, hp.prefix_selection, generator)
    start = int(counts[: module.global_rank].sum()) if len(counts) > 1 else 0
    return kept[start:start + entropy.shape[0], : entropy.shape[1]]


def optimise(module, tb: TrajectoryBatch, old_logprobs: Tensor | None, token_advantages: Tensor,
             is_weights: Tensor | None, items, ref_logprobs: Tensor | None, update_rows: Tensor):
    """The optimiser steps on rows `update_rows` ([N] bool; the others have no gradient). Without
    `old_logprobs` (one step per batch), the forward's own, detached. Returns the loss, the
    grad norm and the last mini-batch's detached log-probs and entropies ([N, T], NaN off its rows)."""
    from prefix_rft_pl.baselines import mini_batch_prompts

    hp = module.hparams
    optimizer = module._optimizer(0)
    n = len(tb.response_ids)
    total, grad_norm = torch.zeros(()), torch.zeros(())
    for _ in range(hp.ppo_epochs):
        for rows in mini_batch_slices(n, hp.mini_batches):  # the same count on every rank
            total, current = mini_batch_backward(
                module, tb.select(rows), None if old_logprobs is None else old_logprobs[rows], token_advantages[rows],
                None if is_weights is None else is_weights[rows], None if ref_logprobs is None else ref_logprobs[rows],
                update_rows[rows])
            if hp.demo_sft_coef > 0:  # on the demonstrations (UFT: hints) of this mini-batch's prompts
                total = total + demo_sft_backward(module, items[mini_batch_prompts(rows, hp.group_size)],
                                                  hp.demo_sft_coef)
            grad_norm = optimizer_step(module, optimizer)
    if hasattr(grad_norm, "full_tensor"):
        grad_norm = grad_norm.full_tensor()
    return total, grad_norm.detach().cpu(), current


def mini_batch_backward(module, tb: TrajectoryBatch, old_logprobs: Tensor | None, token_advantages: Tensor,
                        is_weights: Tensor | None, ref_logprobs: Tensor | None, update_rows: Tensor):
    """Accumulate the gradient of one optimiser step over rows `update_rows` (normalised over all
    rows); returns the mini-batch loss and the rows' detached log-probs and entropies."""
    from prefix_rft_pl.forward import response_logprobs

    hp = module.hparams
    denominator = normaliser(module, tb)
    regularised = hp.entropy_coef > 0 or ref_logprobs is not None  # token-mean terms: entropy bonus, KL
    num_tokens = global_mean_count(module, float(tb.mask.sum())) if regularised else 0.0
    total, index = torch.zeros(()), update_rows.nonzero().squeeze(-1)          # [n] rows with a gradient
    index = index[tb.attention_mask[index].sum(-1).argsort(stable=True)]  # by length: micro-batches pad less
    current = torch.full(tb.mask.shape, float("nan")), torch.full(tb.mask.shape, float("nan"))
    # no row on any rank: one padding micro-batch still makes the gradients 0 (AdamW steps on them)
    for part in micro_batches(module, len(index)) or [None]:
        if part is None:  # padding micro-batch: matches the other ranks' collectives, adds no gradient
            mb = padding_batch(module)
            logprobs, _ = response_logprobs(module.policy, mb, hp.temperature, hp.logprob_chunk_size, False)
            module.manual_backward(logprobs.sum() * 0.0)
            continue
        rows = index[part]
        mb = tb.select(rows)
        logprobs, entropy = response_logprobs(module.policy, mb, hp.temperature, hp.logprob_chunk_size,
                                              hp.entropy_coef > 0 or old_logprobs is None, hp.entropy_coef > 0)
        if old_logprobs is None:
            current[0][rows], current[1][rows] = logprobs.detach().cpu(), entropy.detach().cpu()
        old = logprobs.detach() if old_logprobs is None else old_logprobs[rows].to(logprobs.device)
        per_token = losses.token_losses(
            logprobs, old, token_advantages[rows].to(logprobs.device),
            mb.generated_mask.to(logprobs.device), mb.prefix_mask.to(logprobs.device), hp.prefix_rule,
            hp.eps_low, hp.eps_high, hp.dual_clip, hp.shaping_gamma, hp.prefix_sft_weight)
        if is_weights is not None:
            per_token = per_token * is_weights[rows].to(per_token.device)
        loss = losses.aggregate(hp.aggregation, per_token, mb.mask.to(per_token.device), denominator,
                                hp.max_response_tokens)
        if regularised:
            ref = None if ref_logprobs is None else ref_logprobs[rows].to(logprobs.device)
            loss = loss + losses.regularisers(logprobs, entropy if hp.entropy_coef > 0 else None, ref,
                                              mb.mask.to(logprobs.device), num_tokens, hp.entropy_coef, hp.kl_coef)
        module.manual_backward(loss)
        total += loss.detach().cpu()
    return total, current


def normaliser(module, tb: TrajectoryBatch) -> float:
    """The aggregation's denominator over the whole (all-rank) optimisation mini-batch."""
    if module.hparams.aggregation == "token_mean":
        return global_mean_count(module, float(tb.mask.sum()))
    return global_mean_count(module, len(tb.response_ids))  # trajectories, summed over ranks


def optimizer_step(module, optimizer, max_grad_norm: float | None = None) -> Tensor:
    """Clip (default: `max_grad_norm`) and step. `optimizer` is Lightning's wrapper (the step counts
    towards `global_step` / `max_steps`) or the bare torch optimiser (it does not: ReLIFT's SFT step)."""
    max_grad_norm = module.hparams.max_grad_norm if max_grad_norm is None else max_grad_norm
    grad_norm = torch.nn.utils.clip_grad_norm_(module.policy.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def demo_sft_backward(module, items, weight: float, entropy_coef: float = 0.0) -> Tensor:
    """Backward of weight x token-mean cross-entropy on the items' (first) demonstrations,
    minus entropy_coef x their token-mean entropy (ReLIFT's SFT step)."""
    from prefix_rft_pl.forward import response_logprobs
    from prefix_rft_pl.prefix import Trajectory

    demos = [Trajectory(i, item.prompt_ids, item.demo_ids[0][: module.hparams.max_response_tokens], [], None, "stop")
             for i, item in enumerate(items) if item.demo_ids]
    tb = pad_trajectories(demos, module.tokenizer.pad_token_id) if demos else None
    num_tokens = global_mean_count(module, int(tb.mask.sum()) if demos else 0)  # token mean over all ranks
    total = torch.zeros(())
    for rows in micro_batches(module, len(demos)):  # also when this rank has none: the others may
        mb = tb.select(rows) if rows is not None else padding_batch(module)
        logprobs, entropy = response_logprobs(module.policy, mb, module.hparams.temperature,
                                              module.hparams.logprob_chunk_size, entropy_coef > 0,
                                              entropy_grad=entropy_coef > 0)
        per_token = losses.sft_loss(logprobs, mb.mask.to(logprobs.device), weight)
        if entropy is not None:
            per_token = per_token + losses.entropy_bonus(entropy, mb.mask.to(logprobs.device), entropy_coef)
        loss = losses.aggregate_token_mean(per_token, num_tokens)
        module.manual_backward(loss if rows is not None else loss * 0.0)
        total += loss.detach().cpu() if rows is not None else 0.0
    return total
