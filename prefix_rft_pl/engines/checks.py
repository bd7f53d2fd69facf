"""Trainer/engine agreement: the exact weight check, the log-prob mismatch metrics, truncated IS.

The engine samples from pi_old as it holds it; the trainer recomputes pi_old's log-probs
itself (SPEC section 2.5). Whether the engine holds the trainer's weights is checked
exactly, on the weights themselves, never on log-probs: a bf16 engine beside a float32
trainer differs on log-probs by about 700x what one optimiser step at lr 1e-6 changes
(mean 0.028, max 0.75 on a 135M model; one step: mean 4e-5), so no log-prob threshold can
tell a stale engine from bf16 noise, and a max-abs one over a million tokens trips on noise.

The weight fingerprint. For each tensor, two checksums of its elements' bit patterns in
the engine's dtype: their sum, and their sum weighted by global position + 1, both modulo
the prime P = 2^31 - 1. Integer arithmetic: exact, independent of summation order, and
additive over shards, so an FSDP2 rank hashes only its own shard and one all-reduce of
[num_tensors, 2] integers completes it. One changed element always changes both (its bit
difference is below 2^32 and not a multiple of P unless it is P itself); two swapped
elements change the weighted one; changes that cancel need a weighted sum that is a
multiple of P. The trainer's side hashes its parameters cast to the engine's dtype, as
the weight sync casts them before sending.

What is compared, read inside the engine's worker (`prefix_rft_pl.engines.vllm`):
- whole tensors the engine keeps in checkpoint layout (same name, same shape up to the
  vocabulary padding of embeddings): on vLLM's CPU backend the embeddings, the norms and an
  untied lm_head's parameter; on GPUs also the unfused linear weights (o_proj, down_proj).
- a few columns (first, last, and at a third and two thirds of the input width) of every
  linear layer and of every vocabulary-parallel embedding's GEMM, read through the layer's
  own kernel with one-hot inputs, which returns them exactly (every other product is 0).
  This survives the CPU backend's repacking: every linear weight there is handed to oneDNN
  after loading and the parameter emptied, and the output layer computes with a packed copy
  even where its parameter stays, so whole-tensor fingerprints would miss a copy a push did
  not reach (as the tied lm_head's was, until it was re-packed after every push). Fused
  layers (qkv_proj, gate_up_proj) are compared with their checkpoint parts stacked.
A push that misses any layer shows in its columns; one that reaches every layer but
corrupts columns other than the probed ones only shows where whole tensors are compared.

Log-probs on generated tokens stay as metrics (mean, 99th percentile, max). Prefix tokens
were never sampled by the engine, so it has no log-probs for them: the functions here
ignore them, whatever the engine tensor holds there (zeros, NaN).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PRIME = 2**31 - 1
ROW = 1 << 15        # elements per row: a row's position-weighted sum of 32-bit patterns stays below 2^63
CHUNK = ROW * 128    # elements hashed at once: bounds the int64 temporaries (32 MiB)
_BITS = {2: (torch.int16, 0xFFFF), 4: (torch.int32, 0xFFFFFFFF)}


class StaleWeightsError(RuntimeError):
    """The rollout engine does not hold the trainer's weights."""


def fingerprint(tensor: Tensor, dtype: torch.dtype, start: int = 0) -> Tensor:  # [2] int64, each in [0, P)
    """(sum_j b_j, sum_j b_j * (start + j + 1)) modulo P, b_j the bit pattern of element j of
    the flattened tensor cast to `dtype`, read as an unsigned integer.

    `start` is the global position of the first element (the offset of an FSDP2 shard within
    the full tensor), so the checksums of a tensor's shards add up, modulo P, to those of the
    whole tensor. Rows of ROW elements are summed exactly in int64 and combined modulo P.
    """
    if dtype.itemsize not in _BITS:
        raise ValueError(f"no weight fingerprint for {dtype}: 2- and 4-byte dtypes only")
    int_dtype, mask = _BITS[dtype.itemsize]
    flat = tensor.detach().reshape(-1)
    out = torch.zeros(2, dtype=torch.int64, device=flat.device)
    offsets = torch.arange(ROW, device=flat.device)                                      # [ROW]
    for lo in range(0, flat.numel(), CHUNK):
        bits = flat[lo:lo + CHUNK].to(dtype).view(int_dtype).to(torch.int64) & mask     # [c] in [0, 2^16 or 2^32)
        if len(bits) % ROW:
            bits = torch.nn.functional.pad(bits, (0, ROW - len(bits) % ROW))           # zeros add nothing
        rows = bits.view(-1, ROW)                                                       # [r, ROW]
        sums = rows.sum(1)                                                              # [r] < 2^47
        weighted = (rows * offsets).sum(1)                                              # [r] < 2^62
        first = start + lo + 1 + ROW * torch.arange(len(rows), device=flat.device)     # [r] weight of each row's first
        out[0] += sums.sum() % PRIME
        out[1] += ((sums % PRIME) * (first % PRIME) % PRIME + weighted % PRIME).sum() % PRIME
    return out % PRIME


def policy_fingerprints(
    policy: torch.nn.Module,
    blocks: dict[str, tuple[list[str], list[int] | None]],  # {key: (parameter names stacked on dim 0, columns)}
    dtype: torch.dtype,
) -> dict[str, tuple[int, int]]:
    """Fingerprints of blocks of `policy`'s parameters as held in `dtype`; call it on every rank.

    A block is its parameters stacked along dim 0 (one, or the parts of a fused layer), whole
    (`columns` None) or restricted to `columns` (then -0 counts as 0, as in a GEMM's output).
    FSDP2 parameters (DTensors sharded on dim 0 over a 1-D mesh) are hashed shard by shard and
    the checksums all-reduced, so nothing is gathered; other DTensor layouts are gathered with
    `full_tensor()`.
    """
    params = dict(policy.named_parameters(remove_duplicate=False))  # a tied lm_head under its own name too
    device = next(iter(params.values())).device
    sharded = torch.zeros(len(blocks), 2, dtype=torch.int64, device=device)   # [E, 2] summed over ranks
    local = torch.zeros(len(blocks), 2, dtype=torch.int64, device=device)     # [E, 2] whole on every rank
    group = None
    for i, (names, columns) in enumerate(blocks.values()):
        first_row = 0                                    # of this part within the stacked block
        for name in names:
            param = params[name].detach()
            row_numel = math.prod(param.shape[1:]) if param.dim() else 1
            rows, row_offset, is_sharded = param, 0, _is_row_sharded(param)
            if is_sharded:
                from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

                rows = param.to_local()
                offsets = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)[1]
                row_offset = offsets[0]
                group = param.device_mesh.get_group()
            elif hasattr(param, "full_tensor"):
                rows = param.full_tensor()
            block = rows.reshape(-1, row_numel).to(dtype)                               # [rows, row_numel]
            if columns is not None:
                block = block[:, columns] + 0                                           # [rows, C]
            part = fingerprint(block, dtype, (first_row + row_offset) * block.shape[1])
            if is_sharded:
                sharded[i] += part
            else:
                local[i] += part
            first_row += param.shape[0] if param.dim() else 1
    if group is not None:
        torch.distributed.all_reduce(sharded, group=group)
    total = (sharded % PRIME + local) % PRIME
    return {key: tuple(int(x) for x in value) for key, value in zip(blocks, total)}


def _is_row_sharded(param: Tensor) -> bool:
    """An FSDP2 parameter: a DTensor sharded on dim 0 over a 1-D mesh."""
    from torch.distributed.tensor import DTensor, Shard

    return isinstance(param, DTensor) and param.device_mesh.ndim == 1 and tuple(param.placements) == (Shard(0),)


def comparable_blocks(policy: torch.nn.Module,
                      report: dict[str, dict]) -> dict[str, tuple[list[str], list[int] | None]]:
    """The blocks of an engine's report (`prefix_rft_pl.engines.vllm`) that the policy holds
    with the same names and shapes: whole tensors first, in the policy's order, then columns."""
    params = dict(policy.named_parameters(remove_duplicate=False))
    blocks = {name: ([name], None) for name in dict(policy.named_parameters())
              if tuple(report["tensors"].get(name, ((),))[0]) == tuple(params[name].shape)}
    for key, (parts, columns, shape, _) in report["columns"].items():
        found = [params[p] for p in parts if p in params]
        if (len(found) == len(parts) and all(p.dim() == 2 and p.shape[1] > max(columns) for p in found)
                and sum(p.shape[0] for p in found) == shape[0]):
            blocks[f"{key} columns {columns}"] = (parts, columns)
    return blocks


def check_engine_weights(
    policy: torch.nn.Module,
    report: dict[str, dict] | None,  # the engine's fingerprints (`VLLMEngine.pop_weights_fingerprint`)
    dtype: torch.dtype,
    step: int,
) -> int:
    """Raise StaleWeightsError, on every rank, when any rank's engine holds other weights than
    the trainer; returns the number of blocks compared (0 when no rank sampled this step).
    A collective: call it on every rank, with None on a rank whose engine did not sample.

    Compared: what the engine reports under the trainer's names and shapes, the trainer's
    weights cast to `dtype`. The error names each mismatching rank, its first differing
    block and the step.
    """
    blocks = None if report is None else comparable_blocks(policy, report)
    blocks = next((b for b in gather_from_ranks(blocks) if b is not None), None)  # the same model on every rank
    if blocks is None:
        return 0
    if not blocks:
        raise StaleWeightsError("the rollout engine holds no parameter under the trainer's names and shapes: "
                                "its weights cannot be compared with the trainer's")
    trainer = policy_fingerprints(policy, blocks, dtype)
    mismatch = None
    if report is not None:
        engine = {name: tuple(fp) for name, (_, fp) in report["tensors"].items()}
        engine |= {f"{key} columns {cols}": tuple(fp) for key, (_, cols, _, fp) in report["columns"].items()}
        mismatch = next((key for key in blocks if engine[key] != trainer[key]), None)
    mismatches = gather_from_ranks(mismatch)
    if any(m is not None for m in mismatches):
        raise StaleWeightsError(stale_weights_message({r: m for r, m in enumerate(mismatches) if m is not None}, step))
    return len(blocks)


def stale_weights_message(mismatches: dict[int, str], step: int) -> str:
    """The error for {rank: first mismatching tensor}."""
    where = "; ".join(f"rank {rank}: {name}" for rank, name in sorted(mismatches.items()))
    return (f"the rollout engine's weights differ from the trainer's at step {step} ({where}): the rollouts of "
            "this step were sampled from stale or wrong weights (is callbacks.VLLMWeightSync among the callbacks?)")


def gather_from_ranks(value) -> list:
    """`value` of every rank of the default process group (just this one's without one)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def logprob_mismatch(
    trainer_logprobs: Tensor,  # [N, T] trainer's log-probs of the response tokens
    engine_logprobs: Tensor,   # [N, T] engine's log-probs; meaningful on generated tokens only
    generated_mask: Tensor,    # [N, T] True = token sampled by the engine (not prefix, not padding)
) -> dict[str, float]:
    """Mean, 99th percentile (nearest rank) and max of |trainer - engine| over generated
    tokens, and their number (`count`); all 0 when there are none."""
    if not generated_mask.any():
        return {"mean": 0.0, "p99": 0.0, "max": 0.0, "count": 0.0}
    diff = (trainer_logprobs.double() - engine_logprobs.double())[generated_mask].abs()  # [num generated]
    p99 = diff.kthvalue(math.ceil(0.99 * diff.numel())).values                          # no size limit, unlike quantile
    return {"mean": float(diff.mean()), "p99": float(p99), "max": float(diff.max()), "count": float(diff.numel())}


def logprob_metrics(trainer_logprobs: Tensor, engine_logprobs: Tensor, generated_mask: Tensor) -> dict[str, float]:
    """`rollout/logprob_diff_{mean,p99,max}` of `logprob_mismatch`; a collective under data
    parallelism, where each rank's values come as `rollout/logprob_diff_{stat}_rank{r}` too
    and the unsuffixed ones are over all ranks: the token-weighted mean, the max, and the
    largest rank's p99 (an upper bound of the p99 over all tokens)."""
    stats = logprob_mismatch(trainer_logprobs, engine_logprobs, generated_mask)
    ranks = gather_from_ranks(stats)
    if len(ranks) == 1:
        return {f"rollout/logprob_diff_{k}": v for k, v in stats.items() if k != "count"}
    tokens = sum(r["count"] for r in ranks)
    out = {"rollout/logprob_diff_mean": sum(r["mean"] * r["count"] for r in ranks) / max(tokens, 1.0),
           "rollout/logprob_diff_p99": max(r["p99"] for r in ranks),
           "rollout/logprob_diff_max": max(r["max"] for r in ranks)}
    for rank, r in enumerate(ranks):
        out |= {f"rollout/logprob_diff_{k}_rank{rank}": r[k] for k in ("mean", "p99", "max")}
    return out


def truncated_is_weights(
    old_logprobs: Tensor,      # [N, T] trainer's pi_old log-probs
    engine_logprobs: Tensor,   # [N, T] engine's log-probs of the tokens it sampled
    generated_mask: Tensor,    # [N, T] True = token sampled by the engine
    cap: float,                # upper bound of the weight (TIS truncation)
) -> Tensor:                   # [N, T] min(pi_old / pi_engine, cap) on generated tokens, exactly 1 elsewhere
    """Truncated importance-sampling weights correcting for the engine's sampling distribution.

    Prefix tokens (demonstration, not sampled) and padding get weight exactly 1: TIS never
    touches them (SPEC section 2.5).
    """
    log_ratio = torch.where(generated_mask, old_logprobs.float() - engine_logprobs.float(), 0.0)  # [N, T]
    weights = torch.exp(log_ratio).clamp(max=cap)                                          # [N, T]
    return torch.where(generated_mask, weights, torch.ones_like(weights))
