"""Answer checking: reward 1 when the final boxed answer is equivalent to any accepted
answer, as math-verify decides (`verify(gold, pred)`, gold first).

A reward must never hang or crash training (SPEC 2.3): every verdict is bounded in time
and memory, and failures score 0 and are counted. The cheap, in-process steps
(prefix_rft_pl/answers.py) are linear in their input and refuse what they cannot do
cheaply; everything else runs in worker processes killed past a hard bound per answer
(prefix_rft_pl/grading_pool.py). Verdicts are remembered per (answer, golds), timeouts and
errors included, so a repeated answer is never graded twice. docs/grading.md has the rules.

Pitfalls of the real benchmarks handled here (SPEC 4), so that evaluation reuses them:
zero-padded AIME answers ("025") and AMC floats ("27.0") are caught by an exact decimal
comparison before math-verify; e-notation ("4.5e33") is rewritten as 4.5\\times10^{33},
which math-verify would otherwise read as 4.5*e*33, and numbers written with an exponent
are compared relatively (math-verify rounds to 6 decimal places, under which all tiny
Minerva quantities are equal); `\\$` is a currency sign (MATH-500's `\\$18.90`); a gold
with several values may be answered one box per value; an equation gold ("2x+4y-3=0") is
compared with the answer as an equation; multi-answer and interval answers are left to
math-verify, which compares "a, b" as sets and parses intervals.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from prefix_rft_pl.answers import (  # noqa: F401  (the names callers import from here)
    MAX_ANSWER_CHARS,
    as_number,
    candidate_answers,
    expand_e_notation,
    extract_boxed,
    extract_boxes,
    is_equation,
    is_multi_valued,
    normalize_trivially,
    numbers_match,
    quick_verdict,
    strip_variable,
    too_big,
    wrap_for_math_verify,
)
from prefix_rft_pl.grading_pool import GradingPool, GradingWorkerError, worker_command  # noqa: F401

MEMO_SIZE = 100_000    # verdicts kept by the parent: rollouts of one prompt repeat answers
MEMO_KEY_CHARS = 256   # longer answers are remembered by their hash, not their text

Reading = tuple[str, tuple[str, ...]]   # (answer, the golds it is compared with)


@dataclass
class RewardResult:
    rewards: list[float]   # 1.0 correct, 0.0 otherwise (no answer, wrong, timeout, error)
    num_timeouts: int      # answers whose grading passed the hard time bound
    num_errors: int        # answers whose grading raised (or was too long to grade)
    num_no_answer: int     # completions without a complete \boxed{...}
    statuses: list[str] = field(default_factory=list)  # per completion: correct, wrong, no_answer, timeout, error


# ---------------------------------------------------------------- in a worker

@lru_cache(maxsize=4096)
def _parse(text: str):
    """math-verify's parse with its signal timeout off; gold answers repeat, hence the cache."""
    from math_verify import parse

    return parse(wrap_for_math_verify(text), parsing_timeout=None)


def _is_truth_value(parsed) -> bool:
    """"0=0" parses to sympy's True: a tautology, never an answer."""
    from sympy.logic.boolalg import BooleanAtom

    return bool(parsed) and isinstance(parsed[0], BooleanAtom)


def _equivalent(gold: str, pred: str) -> bool:
    from math_verify import verify

    if verify(_parse(strip_variable(gold)), _parse(strip_variable(pred)), timeout_seconds=None):
        return True
    if is_equation(gold) or is_equation(pred):  # "y=-x/2+3/4" is the line "2x+4y-3=0"
        parsed = _parse(pred)
        return not _is_truth_value(parsed) and verify(_parse(gold), parsed, timeout_seconds=None)
    return False


def grade(pred: str, golds: Sequence[str]) -> bool:
    """True when `pred` (an extracted answer) is equivalent to any accepted gold answer.

    No time bound of its own: call it in a worker process that can be killed.
    """
    quick = quick_verdict(pred, golds)
    if quick is not None:
        return quick
    return any(_equivalent(g, pred) for g in golds)


def grade_readings(readings: Sequence[Reading]) -> bool:
    """A worker's task: any reading of the completion (see `candidate_answers`) is correct."""
    return any(grade(answer, golds) for answer, golds in readings)


_WARM_UP = [("\\frac{1}{2}", "0.5"), ("(1, 2]", "(1,2]"), ("x^2+1", "1+x^{2}"), ("3, 5", "5,3"),
            ("\\sqrt{2}", "2^{1/2}"), ("y=2x+1", "2x-y+1=0")]


def warm_up() -> None:
    """Imports and math-verify's lazy parser set-up, before a worker says it is ready."""
    for pred, gold in _WARM_UP:
        grade(pred, [gold])


# ---------------------------------------------------------------- in the caller's process

def screen(readings: Sequence[Reading]) -> str | None:
    """The in-process verdict ("correct", "wrong", "error") when one is cheap and safe, else
    None (a worker decides). Bounded: see prefix_rft_pl/answers.py."""
    if len(readings[0][0]) > MAX_ANSWER_CHARS:
        return "error"
    decided_false = True
    for answer, golds in readings:
        quick = quick_verdict(answer, golds)
        if quick:
            return "correct"
        if quick is None and too_big(answer) and not any(too_big(g) for g in golds):
            quick = False  # a value of over 10,000 digits equals no gold of ordinary size
        decided_false = decided_false and quick is False
    return "wrong" if decided_false else None


def memo_key(readings: Sequence[Reading]) -> tuple:
    return tuple((a if len(a) <= MEMO_KEY_CHARS else "sha256:" + hashlib.sha256(a.encode()).hexdigest(), golds)
                 for a, golds in readings)


def _readings_or_error(completion: str, golds: Sequence[str]) -> list[Reading] | str:
    try:
        return candidate_answers(completion, golds)
    except Exception:  # noqa: BLE001  (a bug here must not stop training: an error, counted)
        return "error"


def _screen_or_error(readings: Sequence[Reading]) -> str | None:
    try:
        return screen(readings)
    except Exception:  # noqa: BLE001
        return "error"


class MathVerifyReward:
    """Reward = 1.0 when the final boxed answer matches any accepted answer, else 0.0.

    Args:
        num_workers: grading processes, started on the first call and reused.
        timeout_s: hard bound on the grading time of one answer (all its golds).
        startup_timeout_s: how long a new worker may take to import math-verify; a pool
            none of whose workers start raises GradingWorkerError within it.
        memory_mb: address space a worker may add once warm (MemoryError past it: an error).
    """

    def __init__(self, num_workers: int = 2, timeout_s: float = 2.0, startup_timeout_s: float = 60.0,
                 memory_mb: int = 2048):
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.memory_mb = memory_mb
        self._pool: GradingPool | None = None
        self._memo: OrderedDict[tuple, str] = OrderedDict()  # memo_key -> status

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pool"] = None  # processes do not travel; the copy starts its own
        state["_memo"] = OrderedDict()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    @property
    def _workers(self) -> list:
        return [] if self._pool is None else self._pool._workers

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __call__(self, completions: Sequence[str], answers: Sequence[Sequence[str]]) -> RewardResult:
        if len(completions) != len(answers):
            raise ValueError(f"{len(completions)} completions but {len(answers)} answer lists")
        statuses: list[str] = []
        to_grade: dict[tuple, tuple[list[Reading], list[int]]] = {}  # one worker task per distinct key
        for i, (completion, golds) in enumerate(zip(completions, answers)):
            readings = _readings_or_error(completion, golds)
            if not readings or readings == "error":
                statuses.append("no_answer" if not readings else "error")
                continue
            key = memo_key(readings)
            status = self._memo.get(key)
            if status is None:
                status = _screen_or_error(readings)
                if status is None:
                    to_grade.setdefault(key, (readings, []))[1].append(i)
                else:
                    self._memo[key] = status
            statuses.append(status or "pending")
        if to_grade:
            graded = self._grade_in_workers([readings for readings, _ in to_grade.values()])
            for key, status, (_, indices) in zip(to_grade, graded, to_grade.values()):
                self._memo[key] = status
                for i in indices:
                    statuses[i] = status
        while len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return RewardResult([float(s == "correct") for s in statuses], statuses.count("timeout"),
                            statuses.count("error"), statuses.count("no_answer"), statuses)

    def _grade_in_workers(self, tasks: list[list[Reading]]) -> list[str]:
        if self._pool is None:
            command = worker_command("prefix_rft_pl.rewards:grade_readings", self.memory_mb)
            self._pool = GradingPool(self.num_workers, self.timeout_s, self.startup_timeout_s, command)
        return self._pool.grade(tasks)
