"""One raw row -> a `PromptItem` (token ids), or a `Skipped` record saying why not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datamodules.layouts import BadRow, parse_row
from datamodules.sources import RawRow, load_row
from datamodules.templates import encode_demo, encode_prompt
from prefix_rft_pl.types import PromptItem


class BadRowError(ValueError):
    """Raised for the first bad row when `strict=True`; names the file and row."""


@dataclass(frozen=True)
class Skipped:
    """A row left out: `reason` is the counter key, `where` the file and row, `detail` the why."""

    reason: str
    where: str
    detail: str


@dataclass(frozen=True)
class Renderer:
    """Picklable row renderer (it runs in DataLoader workers).

    `max_demo_tokens` drops single over-long demonstrations (EOS counted); a row is skipped
    only when none is left.
    """

    tokenizer: Any
    mapping: dict[str, str]
    template: str
    max_prompt_tokens: int | None = None
    max_demo_tokens: int | None = None
    require_demos: bool = True
    strict: bool = False

    def __call__(self, raw: RawRow) -> PromptItem | Skipped:
        """The item, or why the row is skipped; raises on a malformed file, and on any bad
        row when strict."""
        row = load_row(raw)
        try:
            return self._item(row, raw.uid)
        except BadRow as bad:
            if self.strict:
                raise BadRowError(f"{raw.where}: {bad} (strict=True)") from None
            return Skipped(bad.reason, raw.where, str(bad))

    def _item(self, row: Any, uid: str) -> PromptItem:
        example = parse_row(row, self.mapping, uid, self.require_demos)
        prompt_ids = encode_prompt(example.problem, self.template, self.tokenizer)
        if self.max_prompt_tokens is not None and len(prompt_ids) > self.max_prompt_tokens:
            raise BadRow("prompt_too_long", f"{len(prompt_ids)} > {self.max_prompt_tokens} prompt tokens")
        demo_ids = [encode_demo(demo, self.tokenizer) for demo in example.demos]
        if self.max_demo_tokens is not None:
            longest = max((len(ids) for ids in demo_ids), default=0)
            demo_ids = [ids for ids in demo_ids if len(ids) <= self.max_demo_tokens]
            if example.demos and not demo_ids and self.require_demos:
                raise BadRow("demo_too_long", f"{longest} > {self.max_demo_tokens} demonstration tokens")
        return PromptItem(uid=example.uid, prompt_ids=prompt_ids, demo_ids=demo_ids, answers=example.answers)
