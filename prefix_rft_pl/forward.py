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
    `entropy_grad`, the entropies are differentiable (an entropy bonus in the loss)."""
    device = next(model.parameters()).device
    input_ids = tb.input_ids.to(device)                                      # [N, P + T]
    targets = torch.roll(input_ids, shifts=-1, dims=1)                       # [N, P + T]
    logprobs, entropy = logprobs_from_model(
        model, input_ids, tb.attention_mask.to(device), tb.position_ids.to(device),
        targets, temperature, chunk_size, with_entropy, entropy_grad)
    start, width = tb.prompt_width - 1, tb.response_ids.shape[1]
    logprobs = logprobs[:, start:start + width]                              # [N, T]
    entropy = entropy[:, start:start + width] if entropy is not None else None
    return logprobs, entropy
