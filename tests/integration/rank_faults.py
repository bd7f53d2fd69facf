"""A callback that raises on one rank only, for the shutdown test of per-rank vLLM engines
(tests/integration/test_vllm_ranks.py). It lives outside the test module so that the
ranks, which Lightning starts as fresh processes from the CLI, can import it by class path."""

from __future__ import annotations

import lightning as L


class RaiseOnRank(L.Callback):
    """Raise RuntimeError("injected failure") on `rank` when training batch `step` starts."""

    def __init__(self, rank: int = 1, step: int = 1):
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            raise RuntimeError("injected failure")


class StaleEngineOnRank(L.Callback):
    """After every weight push (list it after `VLLMWeightSync`), put the weights the run
    started from back into `rank`'s engine: that engine is one optimiser step behind from
    step 1 on, the other ranks' are not. Local to the rank: no collective involved."""

    def __init__(self, rank: int = 1):
        self.rank = rank

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if trainer.global_rank != self.rank:
            return
        import torch
        from transformers import AutoModelForCausalLM

        initial = AutoModelForCausalLM.from_pretrained(pl_module.hparams.policy, dtype=torch.float32)
        pl_module.engine.update_weights((name, p.detach().to(pl_module.engine.dtype))
                                        for name, p in initial.named_parameters())
