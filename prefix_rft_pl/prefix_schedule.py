"""Sets the module's prefix-ratio range [low_t, high_t] before every training batch.

The schedule's clock is the number of training iterations (rollout batches) done, as in
the reference code, not `trainer.global_step`: that counts optimiser steps, of which an
iteration takes `ppo_epochs x mini_batches` (and ReLIFT's interleaved SFT steps none).

Its length follows the run's unless set: `steps: null` is the run's rollout batches,
trainer.max_steps / (ppo_epochs x mini_batches). Its state (the iteration it has reached)
is saved in Lightning checkpoints, so a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from prefix_rft_pl.schedule import SCHEDULES

FLAT = ("constant", "uniform")  # kinds whose values do not depend on the length


class PrefixSchedule(L.Callback):
    def __init__(
        self,
        kind: Literal["cosine", "linear", "constant", "uniform"] = "cosine",
        low_start: float = 0.95,
        low_end: float = 0.05,
        high: float = 0.95,
        steps: int | None = None,
        delay: int = 0,
    ):
        """
        Args:
            kind: shape of low_t over training iterations (paper: cosine; ablation: uniform).
            low_start: low_t at step 0 (paper: 0.95).
            low_end: low_t after `steps` (paper: 0.05).
            high: high_t, constant (paper: 0.95).
            steps: length of the decay in training iterations, i.e. rollout batches (paper: 500,
                one optimiser step each); None: the run's, trainer.max_steps / optimiser steps per batch.
            delay: iterations to hold low_start before the decay starts.
        """
        self.kind, self.low_start, self.low_end = kind, low_start, low_end
        self.high, self.steps, self.delay = high, steps, delay
        self.length = steps  # the decay's length in use: `steps`, or the run's (setup)
        self.step = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.kind in FLAT:
            return
        update = pl_module.settings.update
        run = trainer.max_steps // (update.ppo_epochs * update.mini_batches) if trainer.max_steps > 0 else None
        if self.steps is None:
            if run is None:
                raise ValueError("callbacks.PrefixSchedule: steps is null (follow the run) but trainer.max_steps is "
                                 "not set; set trainer.max_steps or the schedule's steps")
            self.length = max(1, run)
        elif run is not None and self.steps != run:  # set by the user: reported, not changed
            low_at_end = self.values(run)[0]
            rank_zero_warn(f"callbacks.PrefixSchedule: steps {self.steps}, but the run has {run} rollout batches "
                           f"(trainer.max_steps {trainer.max_steps}): low_t ends at {low_at_end:.3f}, not "
                           f"{self.low_end}. Leave steps unset to follow the run.")

    def values(self, step: int) -> tuple[float, float]:
        if self.length is None and self.kind not in FLAT:
            raise ValueError("callbacks.PrefixSchedule: steps is null and the run's length is not known yet (setup)")
        low = SCHEDULES[self.kind](step, self.low_start, self.low_end, self.length or 1, self.delay)
        return low, self.high

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        pl_module.prefix_low, pl_module.prefix_high = self.values(self.step)
        pl_module.log_dict({"train/low_t": pl_module.prefix_low, "train/high_t": pl_module.prefix_high})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step += 1  # training iterations (rollout batches) done

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.step = state_dict["step"]
