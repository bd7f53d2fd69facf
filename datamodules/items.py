"""One raw row -> a `Rendered`: its `PromptItem` (token ids) or none, and a `Skipped` record
for the row or for each demonstration left out, saying why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datamodules.layouts import BadRow, parse_row
from datamodules.sources import RawRow, load_row
from datamodules.templates import encode_demo, encode_prompt
from prefix_rft_pl.types import PromptItem


class BadRowError(ValueError):
    """Raised for the first bad row when `strict=True`; names the file and row."""


DEMO_REASONS = frozenset({"demo_too_long"})  # reasons that count demonstrations, not rows


@dataclass(frozen=True)
class Skipped:
    """A row or a demonstration left out: `reason` is the counter key (demonstrations: one of
    `DEMO_REASONS`), `where` the file and row, `detail` the why."""

    reason: str
    where: str
    detail: str


@dataclass(frozen=True)
class Rendered:
    """What a row gave: its item (None when the row is skipped) and everything left out of it."""

    item: PromptItem | None
    skips: tuple[Skipped, ...] = ()


@dataclass(frozen=True)
class Renderer:
    """Picklable row renderer (it runs in DataLoader workers).

    A demonstration longer than `max_demo_tokens` (EOS counted) is never cut: it is left out
    and reported (`demo_too_long`, one per demonstration); a row with none left is skipped
    (`no_demo_left`) when demonstrations are required. With `strict`, either stops the run.
    """

    tokenizer: Any
    mapping: dict[str, str]
    template: str
    max_prompt_tokens: int | None = None
    max_demo_tokens: int | None = None
    require_demos: bool = True
    strict: bool = False

    def __call__(self, raw: RawRow) -> Rendered:
        """The item and what was left out; raises on a malformed file, and on anything left
        out when strict (naming file and row)."""
        row = load_row(raw)
        skips: list[Skipped] = []
        try:
            item = self._item(row, raw, skips)
        except BadRow as bad:
            skips.append(Skipped(bad.reason, raw.where, str(bad)))
            item = None
        if self.strict and skips:
            raise BadRowError(f"{raw.where}: {skips[0].detail} (strict=True)")
        return Rendered(item, tuple(skips))

    def _item(self, row: Any, raw: RawRow, skips: list[Skipped]) -> PromptItem:
        example = parse_row(row, self.mapping, raw.uid, self.require_demos)
        prompt_ids = encode_prompt(example.problem, self.template, self.tokenizer)
        if self.max_prompt_tokens is not None and len(prompt_ids) > self.max_prompt_tokens:
            raise BadRow("prompt_too_long", f"{len(prompt_ids)} > {self.max_prompt_tokens} prompt tokens")
        demo_ids = []
        for k, ids in enumerate(encode_demo(demo, self.tokenizer) for demo in example.demos):
            if self.max_demo_tokens is None or len(ids) <= self.max_demo_tokens:
                demo_ids.append(ids)
                continue
            skips.append(Skipped("demo_too_long", raw.where, (
                f"demo_too_long: demonstration {k + 1} of {len(example.demos)} has {len(ids)} > "
                f"max_demo_tokens={self.max_demo_tokens} tokens (EOS included); left out, not cut")))
        if example.demos and not demo_ids and self.require_demos:
            raise BadRow("no_demo_left", f"every demonstration is longer than max_demo_tokens={self.max_demo_tokens}")
        return PromptItem(uid=example.uid, prompt_ids=prompt_ids, demo_ids=demo_ids, answers=example.answers,
                          extra=example.extra)
