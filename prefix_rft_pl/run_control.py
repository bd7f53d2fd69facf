"""How a run says where it is and how it stops: the module requires this callback.

- At the start it prints the run directory and whether it starts or resumes (and from what).
  A new run (`--ckpt_path null`) into a folder that already holds checkpoints is refused: they
  would be overwritten step by step and mixed with the new run's.
- SIGTERM, SIGINT (Ctrl-C) and, under SLURM, the pre-emption signal (SIGUSR1) do not stop the
  step in flight: the ranks agree at the step's end (one tiny collective per step), save
  `last.ckpt` where `--ckpt_path last` finds it, and stop; under SLURM rank 0 then requeues the
  job. The relaunched command resumes exactly there. A second Ctrl-C stops at once.
- A run so stopped writes no HF export (the module checks `interrupted`): the export marks a
  finished run. A finished run saves `last.ckpt` too (unless checkpointing is off), so that a
  longer max_steps extends it.
- Every `log_every_n_steps` steps, one line: `step 30/500  reward 0.41  loss ...  1.3 s/step`,
  printed when the next step starts (the step's checkpoint and metrics are written by then).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import lightning as L

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where `--ckpt_path last` looks: the checkpoint callback's folder, else the run's."""
    callback = trainer.checkpoint_callback
    folder = callback.dirpath if callback is not None and callback.dirpath else Path(trainer.default_root_dir)
    return Path(folder) / "last.ckpt"


def saves_last(trainer: L.Trainer) -> bool:
    """A ModelCheckpoint with save_last writes last.ckpt when training ends, signal or not."""
    return any(getattr(c, "save_last", False) for c in trainer.checkpoint_callbacks)


def save_last(trainer: L.Trainer) -> Path:
    path = last_checkpoint_path(trainer)
    trainer.save_checkpoint(path, weights_only=False)
    return path


def refuse_new_run_over_checkpoints(trainer: L.Trainer) -> None:
    """A fit that resumes nothing (`ckpt_path` None: `--ckpt_path null`, or a first launch) into a
    checkpoint folder that already holds checkpoints is refused, before any step (at train start): the earlier run's
    checkpoints would be overwritten one by one and mixed with the new run's. (`--ckpt_path last`
    finds them, so only an explicit new run gets here with checkpoints present.)"""
    folder = last_checkpoint_path(trainer).parent
    if trainer.ckpt_path is not None or not folder.is_dir():
        return
    found = sorted(p.name for p in folder.glob("*.ckpt"))
    if found:
        raise FileExistsError(
            f"{folder} already holds checkpoints of a run ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}) "
            "and this fit resumes none of them (--ckpt_path null). To continue that run: --ckpt_path last (the "
            "default); for a new run: another --trainer.default_root_dir (or checkpoint dirpath), or delete the folder")


class RunControl(L.Callback):
    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._clock = 0.0
        self._run_dir = ""

    # ---------------------------------------------------------------- start
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run_dir = trainer.log_dir or trainer.default_root_dir  # a collective under several ranks: every rank

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not in on_fit_start: strategies that restore after setup (FSDP2's ModelParallelStrategy)
        # set `trainer.ckpt_path` only after on_fit_start; here it is set whatever the strategy.
        refuse_new_run_over_checkpoints(trainer)
        if trainer.is_global_zero:  # after the checkpoint's restore, whatever the strategy
            start = f"resuming at step {trainer.global_step}" if trainer.global_step else "starting at step 0"
            print(f"run directory: {self._run_dir} ({start})", flush=True)
        signals = STOP_SIGNALS + ((signal.SIGUSR1,) if "SLURM_JOB_ID" in os.environ else ())
        for signum in signals:  # after Lightning's own handlers, which save mid-step: these replace them
            self._previous[signum] = signal.signal(signum, self._on_signal)
        self._clock = time.perf_counter()

    def _on_signal(self, signum: int, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C
        self.received = signum
        print(f"received {signal.Signals(signum).name}: finishing this step, then saving a checkpoint and "
              "stopping (Ctrl-C again to stop at once)", flush=True)

    # ---------------------------------------------------------------- every step
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._print_step(trainer)  # the previous step's: its checkpoint and its metrics are on disk by now

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        last = 0 < trainer.max_steps <= trainer.global_step  # a signal in the last step: it finishes as usual
        stop = int(self.received is not None and not last)
        if trainer.world_size > 1:  # any rank's signal stops all of them, at the same step
            stop = int(pl_module.ranks().gather_counts(stop).max())
        if not stop:
            return
        path = last_checkpoint_path(trainer) if saves_last(trainer) else save_last(trainer)  # the former: at train end
        pl_module.interrupted = True
        trainer.should_stop = True
        if trainer.is_global_zero:
            print(f"stopped at step {trainer.global_step}: saved {path}; run the same command again to resume",
                  flush=True)

    def _print_step(self, trainer: L.Trainer) -> None:
        every = max(trainer.log_every_n_steps, 1)
        if not trainer.is_global_zero or not trainer.global_step or trainer.global_step % every:
            return
        seconds = (time.perf_counter() - self._clock) / every
        self._clock = time.perf_counter()
        metrics = trainer.callback_metrics
        shown = "  ".join(f"{key.split('/')[-1]} {float(metrics[key]):.4g}"
                          for key in ("reward", "train/loss", "train/lr") if key in metrics)
        total = trainer.max_steps if trainer.max_steps > 0 else "?"
        print(f"step {trainer.global_step}/{total}  {shown}  {seconds:.2f} s/step", flush=True)

    # ---------------------------------------------------------------- end
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        preempted = self.received == signal.SIGUSR1 and "SLURM_JOB_ID" in os.environ
        if trainer.is_global_zero and preempted and pl_module.interrupted:  # after every checkpoint write
            print(f"requeueing SLURM job {os.environ['SLURM_JOB_ID']}", flush=True)
            subprocess.call(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]])
        if trainer.is_global_zero and not self._clock:  # no training batch in this launch
            print(f"run directory: {self._run_dir} (at step {trainer.global_step} of {trainer.max_steps}: nothing "
                  "left to train)", flush=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_step(trainer)
        # a finished run's final state, so that a longer max_steps extends it; not where checkpointing is off
        # (enable_checkpointing=False: nothing written into the working folder)
        if self.received is None and trainer.checkpoint_callback is not None and not saves_last(trainer):
            save_last(trainer)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
