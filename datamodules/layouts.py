"""Layouts: where a row keeps its problem, demonstrations and answer; row validation.

A layout maps the roles `problem`, `demos`, `answer` (and optionally `uid`) to field
paths in a row; a dotted path reads nested fields (`reward_model.ground_truth`).
Presets:
- "plain": the toy task's `{problem, solution, answer}`;
- "openr1": LUFFY's OpenR1-Math-46k parquet, used by the paper: `prompt` is a list of chat
  messages (the problem is the last user message's content; its system turn is dropped,
  the template supplies the paper's prompt), `target` a list of assistant messages (one
  demonstration each), `reward_model.ground_truth` the answer.
A demonstration or answer field may hold one string or a list (several demonstrations per
prompt; several accepted answers). The row's other top-level columns travel with it as
`extra` (reward components see them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PRESETS: dict[str, dict[str, str]] = {
    "plain": {"problem": "problem", "demos": "solution", "answer": "answer"},
    "openr1": {"problem": "prompt", "demos": "target", "answer": "reward_model.ground_truth"},
}
ROLES = ("problem", "demos", "answer")


class BadRow(Exception):
    """A row that cannot be used; `reason` is the counter key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Example:
    """One valid row as text (before tokenisation)."""

    uid: str
    problem: str
    demos: list[str]
    answers: list[str]
    extra: dict[str, Any] = field(default_factory=dict)  # the row's columns outside the layout's roles


def resolve_layout(layout: str | dict[str, str]) -> dict[str, str]:
    """A preset name or a field mapping -> a checked field mapping."""
    if isinstance(layout, str):
        if layout not in PRESETS:
            raise ValueError(f"unknown layout {layout!r}: use one of {sorted(PRESETS)} or a field mapping")
        return dict(PRESETS[layout])
    mapping = dict(layout)
    missing = [role for role in ("problem", "answer") if role not in mapping]
    unknown = sorted(set(mapping) - {*ROLES, "uid"})
    if missing or unknown:
        raise ValueError(f"layout mapping needs {ROLES} (demos optional, uid optional); "
                         f"missing {missing}, unknown {unknown}")
    return mapping


def _get(row: dict, path: str) -> Any:
    value: Any = row
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value or value[key] is None:
            raise BadRow("missing_field", f"no field {path!r}")
        value = value[key]
    return value


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadRow("non_string_field", f"{field!r} is {type(value).__name__}, not a string")
    if not value.strip():
        raise BadRow("empty_field", f"{field!r} is empty")
    return value


def _message_text(value: Any, field: str, role: str | None) -> str:
    """A string, or a chat message {role, content} (checked against `role` when given)."""
    if isinstance(value, dict):
        if role is not None and value.get("role") != role:
            raise BadRow("missing_field", f"{field!r} has no {role} message")
        return _text(value.get("content"), f"{field}.content")
    return _text(value, field)


def _problem(value: Any, field: str) -> str:
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        # chat messages: the problem is the last user turn
        users = [m for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise BadRow("missing_field", f"{field!r} has no user message")
        return _message_text(users[-1], field, "user")
    return _text(value, field)


def _demos(value: Any, field: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise BadRow("empty_field", f"{field!r} is an empty list")
    return [_message_text(v, field, None) for v in items]


_BOXED = re.compile(r"\\boxed\s*\{")


def _unbox(answer: str) -> str:
    """The content of the last \\boxed{...} if the answer is written boxed, else the answer."""
    starts = list(_BOXED.finditer(answer))
    if not starts:
        return answer.strip().strip("$").strip()
    depth, begin = 1, starts[-1].end()
    for i in range(begin, len(answer)):
        depth += {"{": 1, "}": -1}.get(answer[i], 0)
        if depth == 0:
            return answer[begin:i].strip()
    return ""  # unbalanced braces: nothing extractable


def _answers(value: Any, field: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    answers = [_unbox(_text(v, field)) for v in items]
    if not answers or not all(answers):
        raise BadRow("bad_answer", f"{field!r} has no extractable answer: {value!r:.80}")
    return answers


def parse_row(row: Any, mapping: dict[str, str], uid: str, require_demos: bool) -> Example:
    """Validate one row against the layout; raise BadRow with the reason otherwise.

    Without a `demos` field in the layout, or with `require_demos` False (held-out sets) and
    an unusable demonstration field, the example has no demonstrations.
    """
    if not isinstance(row, dict):
        raise BadRow("not_an_object", f"row is {type(row).__name__}, not an object")
    problem = _problem(_get(row, mapping["problem"]), mapping["problem"])
    answers = _answers(_get(row, mapping["answer"]), mapping["answer"])
    demos: list[str] = []
    if "demos" in mapping:
        try:
            demos = _demos(_get(row, mapping["demos"]), mapping["demos"])
        except BadRow:
            if require_demos:
                raise
    elif require_demos:
        raise BadRow("missing_field", "the layout has no demos field")
    if "uid" in mapping:
        uid = str(_get(row, mapping["uid"]))
    used = {path.split(".")[0] for path in mapping.values()}  # `reward_model.ground_truth` uses reward_model
    extra = {key: value for key, value in row.items() if key not in used}
    return Example(uid=uid, problem=problem, demos=demos, answers=answers, extra=extra)
