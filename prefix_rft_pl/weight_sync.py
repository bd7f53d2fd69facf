"""Keep a colocated vLLM engine on the trainer's current weights.

After every training batch (its optimiser steps are done, the next rollout has not begun)
the policy's parameters are pushed to `pl_module.engine`, and once more when training
starts, so that a run resumed from a checkpoint, or a policy held in another dtype than
the checkpoint on disk, never samples from the weights the engine was built with.

Under FSDP2 the parameters are DTensor shards. Every rank gathers the full tensors one
parameter at a time (`DTensor.full_tensor()`, a collective, so all ranks walk the same
parameters in the same order) and streams them to its own engine: at most one full
parameter is alive at a time beyond the shards. Shards are cast to the engine's dtype
before the gather, which halves the traffic when the trainer holds float32 master weights
(FSDP2 mixed precision) and the engine runs bfloat16.

Whether a push arrived is checked where it matters, by the module before it trains on a
rollout batch: the engine's weights as it sampled them against the trainer's, exactly
(the weight fingerprint of `prefix_rft_pl.engines.checks`).

An engine that samples from the live policy (`holds_weights` False: HFEngine) has nothing
to push and is left alone.

The module adds this callback itself when its engine is vLLM (`configure_callbacks`), so a
config overlay that replaces `trainer.callbacks` cannot lose it; it lives in the core for that
reason, and `callbacks` exports it for configs that want to place it in the list.

With one engine per rank (several data-parallel ranks), an exception on one rank leaves
the others waiting in a collective; Lightning's launcher then ends every rank (rank 0
watches the others, and kills them when it fails itself). So that the error says where it
happened, `on_exception` adds the rank to it ("raised on rank 1 of 2") and shuts the
rank's engine down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import lightning as L
import torch
from torch import Tensor

from prefix_rft_pl.engines.base import RolloutEngine


def stream_full_tensors(policy: torch.nn.Module, dtype: torch.dtype | None = None) -> Iterator[tuple[str, Tensor]]:
    """(HF name, full detached tensor) for every parameter, cast to `dtype`, one at a time.

    Sharded (DTensor) parameters are all-gathered as they are reached; call it on every
    rank and consume the whole stream. Tied parameters appear once (`named_parameters`).
    """
    for name, param in policy.named_parameters():
        tensor = param.detach()
        if dtype is not None and tensor.dtype != dtype:
            tensor = tensor.to(dtype)          # on the shard, before the gather
        if hasattr(tensor, "full_tensor"):     # DTensor (FSDP2)
            tensor = tensor.full_tensor()
        yield name, tensor


def push_weights(policy: torch.nn.Module, engine: RolloutEngine) -> float:
    """Stream `policy`'s weights into `engine`; returns the seconds it took."""
    start = time.perf_counter()
    engine.update_weights(stream_full_tensors(policy, engine.dtype))
    return time.perf_counter() - start


def needs_weights(engine: RolloutEngine | None) -> bool:
    """True for engines holding their own copy of the weights (vLLM)."""
    return engine is not None and engine.holds_weights


class VLLMWeightSync(L.Callback):
    """Push the policy's weights to the rollout engine after every training batch.

    Logs `rollout/weight_sync_s`, the wall time of the push (gather included).
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        engine = pl_module.engine
        if needs_weights(engine):
            push_weights(pl_module.policy, engine)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        engine = pl_module.engine
        if not needs_weights(engine):
            return
        seconds = push_weights(pl_module.policy, engine)
        pl_module.log("rollout/weight_sync_s", seconds, on_step=True, on_epoch=False, batch_size=1)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.world_size > 1:
            exception.add_note(f"raised on rank {trainer.global_rank} of {trainer.world_size}")
        engine = pl_module.engine
        if needs_weights(engine):
            engine.close()
            pl_module.engine = None
