"""Optimisers: torch AdamW, or bitsandbytes 8-bit AdamW (its paged variant on GPUs).

bitsandbytes' kernels take plain tensors only: on FSDP2-sharded (DTensor) parameters they
stop with "got mixed torch.Tensor and DTensor". There, the optimiser steps each rank's
local shard: `LocalShards` hands bitsandbytes the shard (`to_local()`, a view of the
parameter's storage, so the update lands in place) and keeps the state per shard, as
plain tensors (paged buffers stay paged). Its `state_dict` wraps that state in DTensors
like the parameter's (the block-wise `absmax` as a [world, blocks] tensor with one row
per rank), so a distributed checkpoint (DCP) stores every rank's part instead of treating
it as replicated; `load_state_dict` unwraps it. A checkpoint so written loads back on the
same number of ranks. Shards start on a 256-element block boundary when the rows of a
shard hold a multiple of 256 elements (true for the usual hidden sizes); the 8-bit update
then equals the unsharded one exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import chain

import torch

OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit")
BNB_BLOCKSIZE = 256  # bitsandbytes' block size of the 8-bit optimiser state (Optimizer2State.init_state)
SHARD_LIKE_PARAM = ("state1", "state2")  # state with the parameter's shape (8-bit or 32-bit)
BLOCKWISE = ("absmax1", "absmax2")       # one float per block of the local shard


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float):
    """The optimiser `name` (one of OPTIMIZERS) over the trainable `params`."""
    params = [p for p in params if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name in ("adamw8bit", "paged_adamw8bit"):
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW8bit if name == "paged_adamw8bit" else bnb.optim.AdamW8bit
        if any(_is_dtensor(p) for p in params):
            cls = type(f"LocalShards{cls.__name__}", (LocalShards, cls), {})
        return cls(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"model.optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, got {name!r}")


def build_scheduler(optimizer, warmup_steps: int, decay: str, min_lr_ratio: float, total_steps: int):
    """The learning-rate schedule of model.optim (transformers' schedules, stepped once per
    optimiser step): linear warm-up over `warmup_steps`, then constant, linear to 0 or cosine to
    `min_lr_ratio` x lr at `total_steps` (trainer.max_steps)."""
    from transformers import get_scheduler

    if decay != "constant" and total_steps < 1:
        raise ValueError(f"model.optim.decay: {decay} decays over trainer.max_steps, which is not set")
    name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine_with_min_lr"}[decay]
    extra = {"min_lr_rate": min_lr_ratio} if decay == "cosine" else None
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=max(total_steps, 1),
                         scheduler_specific_kwargs=extra)


HALF_PRECISION = (torch.bfloat16, torch.float16)


class HalfPrecisionWeightsError(ValueError):
    """The optimiser would step bf16/fp16 parameters (see `check_master_weights`)."""


def check_master_weights(named_params: Iterable[tuple[str, torch.nn.Parameter]], allow_half: bool = False) -> None:
    """Refuse to train half-precision parameters unless `allow_half`.

    AdamW's update at lr 1e-6 is far below a bf16 weight's resolution (8 bits of mantissa): one
    step changed 1.1% of a model's bf16 parameters against 94% in float32, so a pure-bf16 run
    logs normally and barely moves. The optimiser must see float32 master weights.
    """
    half = [(name, p.dtype) for name, p in named_params if p.requires_grad and p.dtype in HALF_PRECISION]
    if not half or allow_half:
        return
    name, dtype = half[0]
    raise HalfPrecisionWeightsError(
        f"the optimiser would step {len(half)} {str(dtype).removeprefix('torch.')} parameters (first: {name!r}); "
        "at the paper's lr 1e-6 AdamW's updates round away in half precision. Keep float32 master weights: "
        f"{MASTER_WEIGHTS_HOWTO}")


MASTER_WEIGHTS_HOWTO = (
    "set model.precision.master: float32 and trainer.precision: 32-true, and compute in bf16 with "
    "model.precision.compute: bfloat16 and model.precision.reduce: float32 (ModelParallelStrategy/FSDP2), "
    "or trainer.precision: bf16-mixed on one device. To step half-precision weights knowingly "
    "(to save memory), set model.precision.allow_half_precision_weights: true.")


class LocalShards:
    """Mixin before a bitsandbytes optimiser class: step DTensor parameters shard by shard."""

    def init_state(self, group, p, gindex, pindex):
        if not _is_dtensor(p):
            return super().init_state(group, p, gindex, pindex)
        _check_layout(p)
        local = _local_with_grad(p)
        super().init_state(group, local, gindex, pindex)
        self.state[p] = self.state.pop(local)

    def update_step(self, group, p, gindex, pindex):
        if not _is_dtensor(p):
            return super().update_step(group, p, gindex, pindex)
        local = _local_with_grad(p)
        if local.numel() == 0:  # a rank with an empty shard (fewer rows than ranks)
            self.state[p]["step"] += 1
            return
        self.state[local] = self.state.pop(p)
        try:
            super().update_step(group, local, gindex, pindex)
        finally:
            self.state[p] = self.state.pop(local)

    def state_dict(self):
        state_dict = super().state_dict()
        for p, state in _param_states(state_dict, self.param_groups):
            _map_shard_state(state, lambda key, value: _wrap(key, value, p))
        return state_dict

    def load_state_dict(self, state_dict, move_to_device=True):
        for p, state in _param_states(state_dict, self.param_groups):
            _map_shard_state(state, lambda key, value: _unwrap(key, value, p))
        return super().load_state_dict(state_dict, move_to_device)


def _is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _local_with_grad(p):
    local = p.to_local()  # a view of the shard's storage: in-place updates reach the parameter
    local.grad = p.grad.to_local() if p.grad is not None else None
    return local


def _param_states(state_dict, param_groups):
    """(parameter, its state) pairs; state keys are matched to parameters by group order."""
    saved = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
    params = dict(zip(saved, chain.from_iterable(g["params"] for g in param_groups)))
    return [(params[k], s) for k, s in state_dict["state"].items() if k in params and _is_dtensor(params[k])]


def _map_shard_state(state: dict, fn) -> None:
    """Apply fn(key, tensor) to the sharded tensors of one parameter's state, in place;
    bitsandbytes keeps the quantisation state in a nested dict of its state_dict."""
    for holder in [state, *(v for v in state.values() if isinstance(v, dict))]:
        for key in [k for k in holder if k in SHARD_LIKE_PARAM + BLOCKWISE]:
            holder[key] = fn(key, holder[key])


def _wrap(key: str, value, p):
    from torch.distributed.tensor import DTensor, Shard

    if key in SHARD_LIKE_PARAM:
        return DTensor.from_local(value, p.device_mesh, p.placements, run_check=False,
                                  shape=p.shape, stride=p.stride())
    width = _max_blocks(p)
    padded = value.new_zeros(1, width)
    padded[0, : value.numel()] = value
    world = p.device_mesh.size()
    return DTensor.from_local(padded, p.device_mesh, [Shard(0)], run_check=False,
                              shape=(world, width), stride=(width, 1))


def _unwrap(key: str, value, p):
    if not _is_dtensor(value):
        return value
    local = value.to_local()
    if key in SHARD_LIKE_PARAM:
        return local
    return local[0, : math.ceil(p.to_local().numel() / BNB_BLOCKSIZE)].clone()


def _max_blocks(p) -> int:
    """Blocks of the largest shard (FSDP2 splits dim 0 like torch.chunk)."""
    rows = math.ceil(p.shape[0] / p.device_mesh.size())
    return math.ceil(rows * math.prod(p.shape[1:]) / BNB_BLOCKSIZE)


def _check_layout(p) -> None:
    from torch.distributed.tensor import Shard

    if p.device_mesh.ndim != 1 or tuple(p.placements) != (Shard(0),):
        raise NotImplementedError(
            f"8-bit AdamW on DTensor parameters supports FSDP2's 1-D dim-0 sharding only, got "
            f"placements {tuple(p.placements)} on a {p.device_mesh.ndim}-D mesh")
