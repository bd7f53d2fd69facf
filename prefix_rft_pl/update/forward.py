"""Log-probs (and entropies) of a TrajectoryBatch's response tokens under a causal LM, one
batch (`response_logprobs`) or micro-batch by micro-batch alike on every rank
(`forward_logprobs`).

Under FSDP2 every forward is a collective: every rank runs as many micro-batches as the rank
with the most (padding micro-batches of one pad token, whose outputs are dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from prefix_rft_pl.config import Settings
from prefix_rft_pl.distributed import padded_micro_batches
from prefix_rft_pl.prefix import Trajectory, TrajectoryBatch, pad_trajectories
from prefix_rft_pl.update.logprobs import logprobs_from_model
from prefix_rft_pl.update.ranks import OneRank, Ranks
from prefix_rft_pl.update.rows import scatter_rows


@dataclass(frozen=True)
class Passes:
    """What every pass over the policy needs besides the batch: the model, its pad id, the
    settings, the ranks, and how to backpropagate (Lightning's `manual_backward` in training)."""

    model: torch.nn.Module
    pad_id: int
    settings: Settings
    ranks: Ranks = OneRank()
    backward: Callable[[Tensor], None] = Tensor.backward

    def micro_batches(self, n: int) -> list[slice | None]:
        """Row slices of `micro_batch_size`, then None (a padding micro-batch) up to the largest
        count of any rank."""
        size = self.settings.update.micro_batch_size
        counts = self.ranks.gather_counts(-(-n // size))
        return padded_micro_batches(n, size, int(counts.max()))

    def padding_batch(self) -> TrajectoryBatch:
        """One trajectory of one pad token: the input of a padding micro-batch (loss x 0)."""
        return pad_trajectories([Trajectory(0, [self.pad_id], [self.pad_id], [], None, "stop")], self.pad_id)

    def logprobs(self, model: torch.nn.Module, tb: TrajectoryBatch, with_entropy: bool,
                 entropy_grad: bool = False) -> tuple[Tensor, Tensor | None]:
        """`response_logprobs` at the rollout temperature and the settings' chunk size."""
        return response_logprobs(model, tb, self.settings.rollout.temperature,
                                 self.settings.update.logprob_chunk_size, with_entropy, entropy_grad)


def forward_logprobs(passes: Passes, tb: TrajectoryBatch, with_entropy: bool, grad: bool,
                     model: torch.nn.Module | None = None, rows: Tensor | None = None):
    """Log-probs (and entropies) [N, T] of every response token under `model` (default: the
    policy), micro-batch by micro-batch; with `rows` ([N] bool), of those rows only (0, entropy
    NaN, elsewhere)."""
    if rows is not None and not rows.all():
        lp, ent = forward_logprobs(passes, tb.select(rows), with_entropy, grad, model)
        return scatter_rows(lp, rows, 0.0), None if ent is None else scatter_rows(ent, rows, float("nan"))
    model = passes.model if model is None else model
    outs, ents = [], []
    with torch.set_grad_enabled(grad):
        for part in passes.micro_batches(len(tb.response_ids)):
            mb = tb.select(part) if part is not None else passes.padding_batch()
            lp, ent = passes.logprobs(model, mb, with_entropy)
            if part is None:
                continue  # a padding micro-batch: only there to match the other ranks' collectives
            outs.append(lp.cpu())
            ents.append(ent.cpu() if ent is not None else None)
    if not outs:  # no rows on this rank
        return torch.zeros(tb.mask.shape), torch.zeros(tb.mask.shape) if with_entropy else None
    return torch.cat(outs), torch.cat(ents) if with_entropy else None


def response_logprobs(
    model: torch.nn.Module,
    tb: TrajectoryBatch,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    with_entropy: bool = True,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:  # [N, T] logprobs and entropies of the response tokens
    """Position P - 1 + t predicts response token t (responses start at column P). With
    `entropy_grad`, the entropies are differentiable (an entropy bonus in the loss).

    Columns that are padding in every row (prompt columns left of the longest prompt, response
    columns right of the longest response) are left out of the forward: they change no
    response token's log-prob (attention masks them, positions are explicit). Their outputs
    are 0; every consumer masks them."""
    device = next(model.parameters()).device
    left, keep = padding_columns(tb.attention_mask, tb.prompt_width)
    input_ids = tb.input_ids[:, left:tb.prompt_width + keep].to(device)      # [N, P' + T']
    targets = torch.roll(input_ids, shifts=-1, dims=1)                       # [N, P' + T']
    logprobs, entropy = logprobs_from_model(
        model, input_ids, tb.attention_mask[:, left:tb.prompt_width + keep].to(device),
        tb.position_ids[:, left:tb.prompt_width + keep].to(device),
        targets, temperature, chunk_size, with_entropy, entropy_grad)
    start, width = tb.prompt_width - left - 1, tb.response_ids.shape[1]
    pad = (0, width - keep)
    logprobs = torch.nn.functional.pad(logprobs[:, start:start + keep], pad)  # [N, T]
    entropy = torch.nn.functional.pad(entropy[:, start:start + keep], pad) if entropy is not None else None
    return logprobs, entropy


def padding_columns(
    attention_mask: Tensor,  # [N, P + T] 1 = real token
    prompt_width: int,       # P
) -> tuple[int, int]:        # (left: prompt columns that are padding in every row, keep: T' response columns)
    """How much of a left-padded batch is padding in every row: its first `left` columns and
    its response columns from `keep` on (`keep` >= 1: one column is always kept)."""
    real = attention_mask.bool().any(0)                                      # [P + T]
    prompt_real = real[:prompt_width].nonzero()
    left = int(prompt_real[0]) if len(prompt_real) else max(prompt_width - 1, 0)
    left = min(left, max(prompt_width - 1, 0))  # keep position P - 1: it predicts response token 0
    response_real = real[prompt_width:].nonzero()
    keep = int(response_real[-1]) + 1 if len(response_real) else 1
    return left, keep
