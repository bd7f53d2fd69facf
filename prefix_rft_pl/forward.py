"""Log-probs of a TrajectoryBatch's response tokens under a causal LM."""

from __future__ import annotations

import torch
from torch import Tensor

from prefix_rft_pl.logprobs import logprobs_from_model
from prefix_rft_pl.prefix import TrajectoryBatch


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
