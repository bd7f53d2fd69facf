"""Token log-probs and entropies from hidden states, chunk by chunk over tokens.

The usual recipe, `log_softmax(logits.float())` over [N, T, V], holds several float32
tensors of that size at once; at V = 151,936 each is 1.2 GB per 2,048 tokens. Here the
N*T tokens are cut into chunks of `chunk_size`, and only one chunk's [chunk, V] float32
logits exist at a time, in the forward pass and in the backward pass alike:

- `lm_head` given as a weight tensor [V, H]: a custom autograd.Function saves only
  `hidden` and the weight, recomputes each chunk's logits in backward, and adds each
  chunk's weight gradient in place into one [V, H] buffer.
- `lm_head` given as a module (any callable [c, H] -> [c, V]): each chunk runs under
  `torch.utils.checkpoint` (non-reentrant), which saves the chunk's input only. This is
  the path for an lm_head that is its own FSDP2 unit: its hooks gather the sharded
  (DTensor) weight on each call, so nothing here touches a DTensor. It costs one extra
  [V, H] gradient transient and, under FSDP2, an all-gather per chunk.

`logprobs_from_model` goes through the model's own forward (lm_head on zero tokens), so an
FSDP2 root keeps its parameters (embeddings, tied or not, and the head) gathered for the
chunks: FSDP2 does not reshard the root after its forward, so under `shard_policy` (layers +
root) the head takes the weight path. Checked against an unsharded model on 2 ranks
(tests/integration/test_fsdp_sharding.py).

Entropy is computed under no_grad by default: it selects prefix tokens and feeds statistics.
With `entropy_grad=True` it is differentiable too (the baselines' entropy bonus, SPEC 3):
the weight path adds dH/dlogits = -p * (log p + H) to each chunk's recomputed gradient. The
logits are the lm_head's output in the input dtype, upcast per chunk to float32 (as HF's
`logits.float()`), then divided by the temperature.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

LMHead = Tensor | Callable[[Tensor], Tensor]


def token_logprobs_and_entropy(
    hidden: Tensor,   # [N, T, H] last hidden state of the backbone
    lm_head: LMHead,  # [V, H] output embedding weight, or a module mapping [c, H] -> [c, V]
    targets: Tensor,  # [N, T] long, the token whose log-prob is read at each position
    temperature: float = 1.0,
    chunk_size: int = 512,
    with_entropy: bool = True,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:  # [N, T] float32 logprobs, [N, T] float32 entropy or None
    """log softmax(hidden @ W^T / temperature)[target] and the softmax's entropy, per token.

    `chunk_size` is the number of tokens (over the flattened N*T) whose [chunk, V] float32
    logits are held at once. Log-probs are differentiable w.r.t. `hidden` and the lm_head
    weight; entropy is too when `entropy_grad` (with `with_entropy`), else not.
    """
    entropy_grad = entropy_grad and with_entropy
    batch_shape = targets.shape
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])  # [M, H], M = N*T
    flat_targets = targets.reshape(-1)                  # [M]
    if isinstance(lm_head, Tensor):
        logprobs, entropy = _ChunkedLogprobs.apply(
            flat_hidden, lm_head, flat_targets, temperature, chunk_size, with_entropy, entropy_grad
        )
    else:
        logprobs, entropy = _checkpointed_chunks(
            flat_hidden, lm_head, flat_targets, temperature, chunk_size, with_entropy, entropy_grad
        )
    return logprobs.view(batch_shape), entropy.view(batch_shape) if with_entropy else None


def naive_token_logprobs_and_entropy(
    logits: Tensor,   # [N, T, V] any float dtype
    targets: Tensor,  # [N, T] long
    temperature: float = 1.0,
) -> tuple[Tensor, Tensor]:  # [N, T] logprobs, [N, T] entropy (no grad); float32 or float64
    """The reference: log_softmax over the whole [N, T, V] at once, in float32 (float64
    logits stay float64, so tests can use it as an exact reference)."""
    upcast = logits.to(torch.promote_types(logits.dtype, torch.float32))
    logp = F.log_softmax(upcast / temperature, dim=-1)                   # [N, T, V]
    logprobs = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)        # [N, T]
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)                           # [N, T]
    return logprobs, entropy


def logprobs_from_model(
    model: torch.nn.Module,   # HF causal LM (Qwen2, Llama, ...), optionally FSDP2-sharded
    input_ids: Tensor,        # [N, T]
    attention_mask: Tensor,   # [N, T] 1 = real token
    position_ids: Tensor | None,  # [N, T], or None for the model's default
    targets: Tensor,          # [N, T] token predicted at each position (input_ids shifted left)
    temperature: float = 1.0,
    chunk_size: int = 512,
    with_entropy: bool = True,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:  # [N, T] float32 logprobs, [N, T] float32 entropy or None
    """Run the model for the backbone's last hidden state, then `token_logprobs_and_entropy`.

    The model is called through its own forward (so FSDP2's root hooks gather the root's
    parameters) with `logits_to_keep` an empty index, so HF's lm_head runs on zero tokens;
    a forward hook on `get_decoder()` captures the last hidden state. `get_output_embeddings()`
    is the lm_head whether or not it is tied to the input embedding. A plain weight takes
    the weight path; a sharded one (a DTensor: lm_head its own FSDP2 unit) or a head with a
    bias takes the module path, so that the head's own forward and hooks make the logits.
    """
    captured = []
    hook = model.get_decoder().register_forward_hook(
        lambda _module, _args, output: captured.append(output.last_hidden_state)
    )
    try:
        model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            logits_to_keep=torch.zeros(0, dtype=torch.long, device=input_ids.device),
        )
    finally:
        hook.remove()
    (hidden,) = captured                                                 # [N, T, H]
    head = model.get_output_embeddings()
    # exact type: a DTensor (FSDP2) or a quantised parameter subclass takes the module path
    plain_weight = type(head.weight) in (Tensor, torch.nn.Parameter)
    use_weight = plain_weight and getattr(head, "bias", None) is None
    return token_logprobs_and_entropy(
        hidden, head.weight if use_weight else head, targets, temperature, chunk_size, with_entropy, entropy_grad
    )


def _chunk_stats(
    logits: Tensor,   # [c, V] float32, already divided by the temperature
    targets: Tensor,  # [c]
    with_entropy: bool,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:  # [c] logprobs, [c] entropy or None
    lse = logits.logsumexp(-1)                                           # [c]
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logprobs, None
    if entropy_grad:  # differentiable (module path): autograd through the chunk
        logp = logits - lse.unsqueeze(-1)                                # [c, V]
        return logprobs, -(logp.exp() * logp).sum(-1)
    with torch.no_grad():
        probs = (logits - lse.unsqueeze(-1)).exp_()                      # [c, V]
        entropy = lse - probs.mul_(logits).sum(-1)                       # [c]
    return logprobs, entropy


class _ChunkedLogprobs(torch.autograd.Function):
    """Weight path: saves hidden [M, H] and weight [V, H]; logits recomputed per chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, chunk_size, with_entropy, entropy_grad=False):
        logprobs = hidden.new_empty(targets.shape, dtype=torch.float32)  # [M]
        entropy = hidden.new_empty(targets.shape, dtype=torch.float32) if with_entropy else None
        for start in range(0, targets.numel(), chunk_size):
            chunk = slice(start, start + chunk_size)
            logits = (hidden[chunk] @ weight.T).float().div_(temperature)  # [c, V]
            lp, ent = _chunk_stats(logits, targets[chunk], with_entropy)
            logprobs[chunk] = lp
            if with_entropy:
                entropy[chunk] = ent
        ctx.save_for_backward(hidden, weight, targets)
        ctx.temperature, ctx.chunk_size, ctx.entropy_grad = temperature, chunk_size, entropy_grad
        if with_entropy and not entropy_grad:
            ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logprobs, grad_entropy):
        hidden, weight, targets = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        # the weight gradient is summed over hundreds of chunks at paper scale: accumulate in
        # float32 whatever the weight's dtype (bf16 sums lose ~0.4% per 64 chunks), cast once
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for start in range(0, targets.numel(), ctx.chunk_size):
            chunk = slice(start, start + ctx.chunk_size)
            h, t, g = hidden[chunk], targets[chunk], grad_logprobs[chunk]  # [c, H], [c], [c]
            logits = (h @ weight.T).float().div_(ctx.temperature)        # [c, V]
            grad_from_entropy = None
            if ctx.entropy_grad and grad_entropy is not None:  # dH/dz = -p * (log p + H)
                logp = logits.log_softmax(-1)                            # [c, V]
                probs = logp.exp()
                entropy = -(probs * logp).sum(-1, keepdim=True)          # [c, 1]
                grad_from_entropy = probs.mul_(logp.add_(entropy)).mul_(-grad_entropy[chunk].unsqueeze(-1))
                del logp
            # d logprob / d logits = onehot(target) - softmax, times 1/temperature; all in
            # place, so one [c, V] float32 buffer is live next to the [V, H] gradient
            grad_logits = logits.sub_(logits.amax(-1, keepdim=True)).exp_()
            grad_logits.div_(grad_logits.sum(-1, keepdim=True))          # softmax
            grad_logits.mul_(-g.unsqueeze(-1))
            grad_logits[torch.arange(t.numel(), device=t.device), t] += g
            if grad_from_entropy is not None:
                grad_logits.add_(grad_from_entropy)
            grad_logits = grad_logits.div_(ctx.temperature).to(weight.dtype)  # [c, V]
            if grad_hidden is not None:
                grad_hidden[chunk] = grad_logits @ weight                # [c, H]
            if grad_weight is not None:
                _accumulate_weight_grad(grad_weight, grad_logits, h)     # [V, H] float32
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)                   # one rounding, at the end
        return grad_hidden, grad_weight, None, None, None, None, None


def _accumulate_weight_grad(
    grad_weight: Tensor,  # [V, H] float32 accumulator, updated in place
    grad_logits: Tensor,  # [c, V] in the weight's dtype
    hidden: Tensor,       # [c, H] in the weight's dtype
) -> None:
    """grad_weight += grad_logits^T @ hidden. The product runs in the inputs' dtype (bf16
    tensor cores on GPUs, one rounding per chunk); the sum over chunks stays float32, so the
    error does not grow with the number of chunks."""
    if grad_logits.dtype == torch.float32:
        grad_weight.addmm_(grad_logits.T, hidden)                        # no [V, H] transient
    else:
        grad_weight.add_(grad_logits.T @ hidden)                         # [V, H] transient, low precision


def _checkpointed_chunks(
    hidden: Tensor,                     # [M, H]
    lm_head: Callable[[Tensor], Tensor],  # [c, H] -> [c, V]
    targets: Tensor,                    # [M]
    temperature: float,
    chunk_size: int,
    with_entropy: bool,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor]:  # [M] logprobs, [M] entropy (empty when not asked for)
    def one_chunk(h: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        logits = lm_head(h).float() / temperature                        # [c, V]
        lp, ent = _chunk_stats(logits, t, with_entropy, entropy_grad)
        return lp, ent if with_entropy else lp.new_empty(0)

    parts = [
        checkpoint(one_chunk, hidden[start : start + chunk_size], targets[start : start + chunk_size],
                   use_reentrant=False)
        for start in range(0, targets.numel(), chunk_size)
    ]
    return torch.cat([lp for lp, _ in parts]), torch.cat([ent for _, ent in parts])
