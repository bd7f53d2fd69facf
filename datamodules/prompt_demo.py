"""`PromptDemoDataModule`: prompts, demonstrations and answers as token ids, streamed.

Training batches come from an endless, seeded, rank-sharded stream (see `stream.py`) and
are `PromptDemoBatch`es of `batch_size` prompts per rank. The position reached is saved in
Lightning checkpoints (`state_dict`): a batch counts as consumed when Lightning hands it to
the training step (`on_before_batch_transfer`), not when the loader prefetches it, so a
resumed run neither repeats nor skips prompts. Without a Trainer, a batch counts as
consumed when the iterator yields it.

Every demonstration of a prompt within `max_demo_tokens` is kept in `PromptItem.demo_ids`;
the policy module picks the one a hybrid rollout continues. A longer one is left out and
counted, never cut. Before any row is streamed, every source is checked for rows and for
the columns the layout reads (`checks.py`).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any

import lightning as L

from datamodules.layouts import resolve_layout
from datamodules.templates import check_template

log = logging.getLogger(__name__)


class PromptDemoDataModule(L.LightningDataModule):
    def __init__(
        self,
        tokenizer: str,
        train_files: list[str] | str | None = None,
        val_files: list[str] | str | None = None,
        layout: str | dict[str, str] = "plain",
        template: str = "qwen_math",
        batch_size: int = 8,
        val_batch_size: int | None = None,
        seed: int | None = None,
        max_prompt_tokens: int | None = None,
        max_demo_tokens: int | None = None,
        subset: int | float | None = None,
        shuffle_buffer: int = 10_000,
        num_workers: int = 0,
        strict: bool = False,
    ):
        """
        Args:
            tokenizer: HF hub id or local directory of the tokenizer (the CLI links model.policy here).
            train_files: training sources: jsonl / json / parquet files or globs, a `save_to_disk`
                directory, or a hub id written `org/name?config=c&split=s` (split defaults to train).
            val_files: held-out sources (same forms); demonstrations there are optional.
            layout: field layout: a preset (plain: {problem, solution, answer}; openr1: LUFFY's
                OpenR1-Math-46k parquet) or a mapping {problem, demos, answer[, uid]} of dotted field paths.
            template: prompt template: qwen_math, llama3.1, chat (the tokenizer's chat template),
                plain, toy, or a literal string containing {problem}.
            batch_size: prompts per optimisation step per rank.
            val_batch_size: prompts per validation batch (default: batch_size).
            seed: seed of shuffling, subsets and epoch reshuffles; null: the module's seed (the CLI's).
            max_prompt_tokens: skip rows whose rendered prompt is longer; None: no limit.
            max_demo_tokens: leave out (never cut) demonstrations longer than this, EOS included,
                counting each as `demo_too_long`; a training row with none left is skipped
                (`no_demo_left`). The CLI links model.rollout.max_response_tokens here. None: no limit.
            subset: train on a seeded subset of the rows: a fraction in (0, 1] (0.01 and 0.1 for the
                1% / 10% ablations) or a count (an integer). None: all rows.
            shuffle_buffer: rows held by the shuffle buffer (a full shuffle when the set fits);
                0 keeps file order.
            num_workers: DataLoader worker processes that parse and tokenise rows (0: in process).
            strict: stop at the first bad row (naming file and row) instead of skipping and counting it.
        """
        super().__init__()
        check_template(template)
        resolve_layout(layout)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        seed = 0 if seed is None else seed  # the CLI passes the module's (seed_everything's unless set); else 0
        self.save_hyperparameters()  # reads the arguments from this frame: the resolved seed
        self.tokenizer = None
        self.skipped: Counter = Counter()      # training rows skipped, by reason
        self.val_skipped: Counter = Counter()  # held-out rows skipped, by reason
        self.position = None                   # this rank's committed stream position
        self._handed_out: deque = deque(maxlen=64)
        self._train_sources = self._val_sources = None
        self._subset = None

    # ------------------------------------------------------------------ setup
    def _rank(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def setup(self, stage: str | None = None) -> None:
        from datamodules.sources import resolve_sources
        from datamodules.stream import Position, subset_for

        if self.tokenizer is None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.hparams.tokenizer)
        if self._train_sources is None:
            train_sources = resolve_sources(self.hparams.train_files)
            self._val_sources = resolve_sources(self.hparams.val_files)
            self._check(train_sources, "train_files", require_demos=True)
            self._check(self._val_sources, "val_files", require_demos=False)
            self._subset = subset_for(train_sources, self.hparams.subset, self.hparams.seed)
            self._train_sources = train_sources
        if self.position is None:
            self.position = Position()

    def _check(self, sources, what: str, require_demos: bool) -> None:
        """Empty files and columns other than the layout's fail here, before any row is streamed."""
        from datamodules.checks import check_sources

        spec = getattr(self.hparams, what)
        check_sources(sources, resolve_layout(self.hparams.layout), self.hparams.layout, require_demos,
                      f"{what}={spec!r}")

    def _order(self, train: bool):
        from datamodules.stream import Order

        rank, world_size = self._rank()
        if not train:
            return Order(seed=self.hparams.seed, rank=rank, world_size=world_size)
        return Order(self.hparams.seed, self.hparams.shuffle_buffer, rank, world_size, self._subset)

    def _renderer(self, train: bool):
        from datamodules.items import Renderer

        hp = self.hparams
        return Renderer(self.tokenizer, resolve_layout(hp.layout), hp.template, hp.max_prompt_tokens,
                        hp.max_demo_tokens, require_demos=train, strict=hp.strict)

    # ------------------------------------------------------------ dataloaders
    def train_dataloader(self):
        from datamodules.loaders import TrainBatches

        self.setup("fit")
        if not self._train_sources:
            raise ValueError("train_files is not set")
        return TrainBatches(
            self._train_sources, self._order(True), self._renderer(True),
            self.hparams.batch_size, start=lambda: self.position, on_batch=self._on_batch_handed_out,
            skipped=self.skipped, num_workers=self.hparams.num_workers,
        )

    def val_dataloader(self):
        from datamodules.loaders import held_out_loader

        self.setup("validate")
        if not self._val_sources:
            return []
        return held_out_loader(self._val_sources, self._order(False), self._renderer(False),
                               self.hparams.val_batch_size or self.hparams.batch_size,
                               self.hparams.num_workers, self.val_skipped)

    # ------------------------------------------------------ position tracking
    def _on_batch_handed_out(self, batch, position) -> None:
        if self.trainer is None:
            self.position = position  # a plain loop consumes what it receives
        else:
            self._handed_out.append((batch, position))

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning calls this once per batch it runs a step on (after prefetching)."""
        for i, (handed, position) in enumerate(self._handed_out):
            if handed is batch:
                self.position = position
                for _ in range(i + 1):
                    self._handed_out.popleft()
                break
        return batch

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return batch  # token-id lists only (frozen records): the module builds tensors on its device

    def skip_counts(self) -> dict[str, int]:
        """Skipped-row counts so far as flat metric names, for the module to log every step:
        `data/skipped` (rows, all reasons, present from the first step on) and
        `data/skipped_<reason>` per reason met; `data/val_skipped_<reason>` for held-out rows.
        `demo_too_long` counts demonstrations left out, not rows (so it is not in `data/skipped`);
        a row that loses all of them is also counted as `no_demo_left`."""
        from datamodules.items import DEMO_REASONS

        counts = {"data/skipped": sum(v for k, v in self.skipped.items() if k not in DEMO_REASONS)}
        counts.update({f"data/skipped_{k}": v for k, v in self.skipped.items()})
        counts.update({f"data/val_skipped_{k}": v for k, v in self.val_skipped.items()})
        return counts

    def state_dict(self) -> dict[str, Any]:
        """Every rank's stream position (gathered: Lightning writes rank 0's copy only)."""
        from datamodules.stream import Position

        position = self.position or Position()
        positions = [[position.epoch, position.offset]]
        rank, world_size = self._rank()
        if world_size > 1:
            import torch

            local = torch.tensor(positions[0], device=self.trainer.strategy.root_device)
            positions = self.trainer.strategy.all_gather(local).reshape(world_size, 2).tolist()
        return {"positions": positions, "seed": self.hparams.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        from datamodules.stream import Position

        rank, world_size = self._rank()
        positions = state_dict["positions"]
        if state_dict.get("seed", self.hparams.seed) != self.hparams.seed:
            log.warning("data seed changed from %s to %s: the resumed order is a different one",
                        state_dict["seed"], self.hparams.seed)
        if len(positions) != world_size:
            epoch = min(p[0] for p in positions)
            log.warning("checkpoint has %d data ranks, run has %d: restarting data epoch %d from its start",
                        len(positions), world_size, epoch)
            self.position = Position(epoch, 0)
        else:
            self.position = Position(*positions[rank])
        self._handed_out.clear()

    def teardown(self, stage: str) -> None:
        if self.skipped or self.val_skipped:
            log.info("rows skipped: train %s, held-out %s", dict(self.skipped), dict(self.val_skipped))
