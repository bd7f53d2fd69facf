"""FSDP2 for the policy under Lightning's ModelParallelStrategy.

`fully_shard` is applied to every decoder layer, to the backbone and to the lm_head
separately (the log-prob code calls the backbone and the head directly, not through the
root module's forward), then to the root. Mixed precision is a config option for GPUs.
"""

from __future__ import annotations

import torch


def shard_policy(policy: torch.nn.Module, device_mesh, param_dtype: str | None = None,
                 reduce_dtype: str | None = "float32") -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = device_mesh["data_parallel"] if "data_parallel" in (device_mesh.mesh_dim_names or ()) else device_mesh
    mp = MixedPrecisionPolicy(
        param_dtype=getattr(torch, param_dtype) if param_dtype else None,
        reduce_dtype=getattr(torch, reduce_dtype) if reduce_dtype else None,
    )
    backbone = policy.get_decoder()
    for layer in backbone.layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(backbone, mesh=mesh, mp_policy=mp)
    head = policy.get_output_embeddings()
    if head.weight is not backbone.get_input_embeddings().weight:  # tied heads live in the backbone
        fully_shard(head, mesh=mesh, mp_policy=mp, reshard_after_forward=False)
    fully_shard(policy, mesh=mesh, mp_policy=mp)


def full_state_dict(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU state dict; under FSDP2 every rank takes part, rank 0 gets it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not any(hasattr(p, "full_tensor") for p in policy.parameters()):
        return {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    return get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
