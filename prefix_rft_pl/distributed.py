"""FSDP2 for the policy under Lightning's ModelParallelStrategy.

`fully_shard` is applied to every decoder layer, then to the root (the whole causal LM),
so the embeddings, the final norm and the lm_head, tied or not, form one root unit. The
log-prob code (`logprobs.logprobs_from_model`) runs the root's own forward with an empty
`logits_to_keep` and then calls the lm_head per chunk outside it: FSDP2 never reshards the
root after its forward (the root's parameters would be gathered again at once for
backward), so the head's weight is still the gathered, plain tensor there, and the root's
post-backward, which runs when the backward ends, reduce-scatters its gradient. Backbone
and head as separate units do not work: calling the head outside a root forward needs
its own unit, and a tied head cannot be split from the embedding.

Mixed precision (`MixedPrecisionPolicy`: gathered parameters in `param_dtype`, gradients
reduced in `reduce_dtype`) is an option for GPUs. Activation checkpointing is the model's
own (`gradient_checkpointing_enable`), which composes with per-layer units.
"""

from __future__ import annotations

import torch


def shard_policy(
    policy: torch.nn.Module,
    device_mesh,
    param_dtype: str | None = None,
    reduce_dtype: str | None = None,
) -> None:
    """Shard `policy` in place over the mesh's data-parallel dimension.

    Args:
        policy: HF causal LM whose decoder (`get_decoder()`) has a `layers` list.
        device_mesh: Lightning's `ModelParallelStrategy.device_mesh` (or any 1-D mesh).
        param_dtype: dtype of the gathered parameters in forward/backward (e.g. "bfloat16");
            None keeps the stored dtype.
        reduce_dtype: dtype of the gradient reduce-scatter (e.g. "float32"); None uses
            param_dtype.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    names = device_mesh.mesh_dim_names or ()
    mesh = device_mesh["data_parallel"] if "data_parallel" in names else device_mesh
    mp = MixedPrecisionPolicy(
        param_dtype=getattr(torch, param_dtype) if param_dtype else None,
        reduce_dtype=getattr(torch, reduce_dtype) if reduce_dtype else None,
    )
    for layer in policy.get_decoder().layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(policy, mesh=mesh, mp_policy=mp)


def full_state_dict(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU state dict; under FSDP2 every rank takes part, rank 0 gets it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not any(hasattr(p, "full_tensor") for p in policy.parameters()):
        return {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    return get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


# ---------------------------------------------------------------- layouts of a batch over ranks
# Under FSDP2 every forward and backward is a collective: all ranks must run the same number
# of them, whatever number of trajectories each holds. The helpers below keep the counts equal
# and the gathered order (rank 0's rows, then rank 1's, ...) the same as one rank holding them all.


def mini_batch_slices(num_rows: int, num_mini_batches: int) -> list[slice]:
    """Exactly `num_mini_batches` contiguous slices of `num_rows` rows (as torch.tensor_split:
    sizes differ by at most one; some are empty when there are fewer rows than mini-batches)."""
    base, extra = divmod(num_rows, num_mini_batches)
    bounds = [0]
    for i in range(num_mini_batches):
        bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def padded_micro_batches(num_rows: int, size: int, count: int) -> list[slice | None]:
    """Slices of `size` rows over `num_rows`, then None (a padding micro-batch) up to `count`."""
    slices: list[slice | None] = [slice(i, min(i + size, num_rows)) for i in range(0, num_rows, size)]
    if len(slices) > count:
        raise ValueError(f"{len(slices)} micro-batches on this rank, more than the {count} asked for")
    return slices + [None] * (count - len(slices))


def take_share(items: list, rank: int, world_size: int) -> list:
    """Rank `rank`'s share of a list every rank holds: every world_size-th item (sizes differ by at most one)."""
    return items[rank::world_size]


def gather_rows(all_gather, rows: torch.Tensor, counts: torch.Tensor, device) -> torch.Tensor:
    """Concatenate every rank's `rows` [n_r, ...] in rank order, for any n_r.

    `all_gather` is Lightning's (`LightningModule.all_gather`), which needs equal shapes: rows
    are padded to max(counts) before the gather and the padding dropped after.
    """
    width = int(counts.max())
    padded = rows.new_zeros((width, *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    gathered = all_gather(padded.to(device)).cpu()                       # [W, width, ...]
    return torch.cat([gathered[r, : int(n)] for r, n in enumerate(counts)])


def all_gather_objects(objects: list) -> list:
    """Every rank's list, concatenated in rank order (the list itself when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(objects)
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, list(objects))
    return [obj for part in out for obj in part]
