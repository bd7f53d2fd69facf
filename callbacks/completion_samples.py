"""Every N steps, a few of the step's rollouts where people read them: `completions.jsonl` in the
run directory (one JSON object per rollout: step, uid, prompt, prefix_len in tokens, completion,
each reward component's score and status, the weighted reward, the advantage), TensorBoard's
text tab, and a W&B table, for the loggers of the run that show text or tables.

Optional: the module trains the same without it. It reads what `training_step` returns
("rollouts"). Rank 0 writes the first `num_samples` rollouts of its own batch (prompt-major: the
first prompt's group, ordinary and hybrid rollouts side by side). A resumed run first drops the
file's lines of steps after the checkpoint's (those steps run again), then appends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L

from prefix_rft_pl.types import ScoredRollouts


def sample_records(rollouts: ScoredRollouts, step: int, num_samples: int, decode) -> list[dict[str, Any]]:
    """The first `num_samples` rollouts as JSON-ready records; `decode` turns prompt ids into text."""
    return [{"step": step, "uid": rollouts.uids[i], "prompt": decode(rollouts.prompt_ids[i]),
             "prefix_len": rollouts.prefix_lens[i], "completion": rollouts.completions[i],
             "rewards": {name: values[i] for name, values in rollouts.rewards.items()},
             "statuses": {name: statuses[i] for name, statuses in rollouts.statuses.items()},
             "reward": rollouts.reward[i], "advantage": rollouts.advantages[i]}
            for i in range(min(num_samples, len(rollouts.uids)))]


def drop_steps_after(path: Path, step: int) -> None:
    """Keep the lines of steps <= `step` (and drop a line cut short by a kill)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def as_markdown(records: list[dict[str, Any]]) -> str:
    """TensorBoard's text tab renders markdown: a heading per rollout, texts as code blocks."""
    blocks = []
    for k, r in enumerate(records):
        parts = ", ".join(f"{name} {value:.3g}" for name, value in r["rewards"].items())
        head = (f"#### {k + 1}. uid {r['uid']}, prefix {r['prefix_len']} tokens, reward {r['reward']:.3g} ({parts}), "
                f"advantage {r['advantage']:+.3g}")
        code = ["    " + line for text in (r["prompt"], "---", r["completion"]) for line in text.splitlines() or [""]]
        blocks.append("\n".join([head, "", *code]))
    return "\n\n".join(blocks)


def table(records: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of a W&B table: one row per rollout, one column per reward component."""
    names = list(records[0]["rewards"]) if records else []
    columns = ["step", "uid", "prompt", "prefix_len", "completion", "reward", "advantage", *names]
    rows = [[r["step"], r["uid"], r["prompt"], r["prefix_len"], r["completion"], r["reward"], r["advantage"],
             *(r["rewards"][n] for n in names)] for r in records]
    return columns, rows


def log_samples(loggers: list, records: list[dict[str, Any]], step: int, key: str = "completions") -> None:
    """TensorBoard text and a W&B table, for the loggers that are there (W&B need not be installed)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(key, as_markdown(records), global_step=step)
        elif isinstance(logger, WandbLogger):
            columns, rows = table(records)
            logger.log_table(key=key, columns=columns, data=rows, step=step)


class CompletionSamples(L.Callback):
    def __init__(self, every_n_steps: int = 10, num_samples: int = 8, filename: str = "completions.jsonl"):
        """
        Args:
            every_n_steps: write when the run passes a multiple of this many (optimiser) steps.
            num_samples: rollouts per write (the first of rank 0's batch: a group is rollout.group_size).
            filename: the JSONL file, in the run directory.
        """
        for key, value in (("every_n_steps", every_n_steps), ("num_samples", num_samples)):
            if value < 1:
                raise ValueError(f"callbacks.CompletionSamples.{key}: must be >= 1, got {value}")
        self.every_n_steps, self.num_samples, self.filename = every_n_steps, num_samples, filename
        self.path: Path | None = None
        self._step_before = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path = Path(trainer.log_dir or trainer.default_root_dir) / self.filename  # log_dir: every rank

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # after the checkpoint's restore: global_step is where the run resumes
            drop_steps_after(self.path, trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        step = trainer.global_step  # several optimiser steps per batch: write when a multiple is passed
        due = step // self.every_n_steps > self._step_before // self.every_n_steps
        if not (due and trainer.is_global_zero and isinstance(outputs, dict) and "rollouts" in outputs):
            return
        records = sample_records(outputs["rollouts"], step, self.num_samples, pl_module.tokenizer.decode)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        log_samples(trainer.loggers, records, step)
