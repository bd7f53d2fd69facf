"""Answer extraction and checking: reward 1 when the last \\boxed{} answer is equivalent to
any accepted answer, as math-verify decides (`verify(gold, pred)`, gold first).

A reward must never hang or crash training (SPEC 2.3). math-verify bounds its own work
with SIGALRM, which only works in a main thread and cannot interrupt C code (sympy on huge
integers), so grading runs in worker processes with math-verify's timeouts off, and the
parent enforces a hard bound per answer: a worker past it is killed and replaced, the
answer scores 0 and counts as a timeout. Exceptions score 0 and count as errors.

Pitfalls of the real benchmarks handled here (SPEC 4), so that evaluation reuses them:
zero-padded AIME answers ("025") and AMC floats ("27.0") are caught by an exact decimal
comparison before math-verify; e-notation ("4.5e33") is rewritten as 4.5\\times10^{33},
which math-verify would otherwise read as 4.5*e*33, and numbers written with an exponent
are compared relatively (math-verify rounds to 6 decimal places, under which all tiny
Minerva quantities are equal); multi-answer and interval answers are left to math-verify,
which compares "a, b" as sets and parses intervals.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from pathlib import Path

BOX_COMMANDS = ("\\boxed", "\\fbox")
MEMO_SIZE = 100_000  # verdicts kept by the parent: rollouts of one prompt repeat answers


@dataclass
class RewardResult:
    rewards: list[float]   # 1.0 correct, 0.0 otherwise (no answer, wrong, timeout, error)
    num_timeouts: int      # answers whose grading passed the hard time bound
    num_errors: int        # answers whose grading raised
    num_no_answer: int     # completions without a complete \boxed{...}
    statuses: list[str] = field(default_factory=list)  # per completion: correct, wrong, no_answer, timeout, error


# ---------------------------------------------------------------- pure functions

def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in `text`, braces balanced.

    `\\{` and `\\}` inside the box are content, not delimiters. `\\boxed 5` (no braces)
    yields "5". A last box left unclosed (a truncated completion) yields None: an earlier
    box is an intermediate result, not the final answer.
    """
    start = max(text.rfind(cmd) for cmd in BOX_COMMANDS)
    if start < 0:
        return None
    cmd = next(c for c in BOX_COMMANDS if text.startswith(c, start))
    rest = text[start + len(cmd):]
    if rest[:1] == " ":
        return rest[1:].split("$")[0].split()[0] if rest[1:].strip() else None
    if rest[:1] != "{":
        return None
    depth, i = 0, 0
    while i < len(rest):
        ch = rest[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i].strip()
        i += 1
    return None


_E_NOTATION = re.compile(r"(?<![\w\\.])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d+)(?![\w.])")
_TRIVIAL = re.compile(r"\s+|\$|\\left|\\right|\\!|\\,|\\;|\\:|\\ ")


def expand_e_notation(text: str) -> str:
    """'4.5e33' -> '4.5\\times10^{33}' (math-verify reads the former as 4.5*e*33)."""
    return _E_NOTATION.sub(lambda m: f"{m.group(1)}\\times10^{{{int(m.group(2))}}}", text)


def normalize_trivially(text: str) -> str:
    """Drop spacing, dollars, \\left/\\right and a trailing period: nothing that changes meaning."""
    return _TRIVIAL.sub("", text).rstrip(".")


_SCIENTIFIC = re.compile(
    r"(?P<mantissa>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:[eE](?P<e>[+-]?\d+)|(?:\\times|\\cdot|\*|×)10\^\{?(?P<pow>[+-]?\d+)\}?)?"
)
_POWER_OF_TEN = re.compile(r"10\^\{?(?P<pow>[+-]?\d+)\}?")
_UNIT_SUFFIX = re.compile(r"(?:~|\\quad)?\\(?:text|mathrm|mbox)\{[^{}]*\}$")


_FRACTION = re.compile(r"(?P<sign>[+-]?)(?:\\[dt]?frac\{(?P<a>\d+)\}\{(?P<b>\d+)\}|(?P<c>\d+)/(?P<d>\d+))")


@dataclass(frozen=True)
class Number:
    value: Fraction
    kind: str   # "integer" ("025"), "fraction" (\frac{1}{2}, 1/2), "decimal" ("27.0"), "scientific" (4.5e33, 10^{-3})


def as_number(text: str) -> Number | None:
    """The exact value of a plain, fractional or scientific number (a trailing unit
    dropped), else None."""
    t = _UNIT_SUFFIX.sub("", normalize_trivially(text))
    m = _SCIENTIFIC.fullmatch(t)
    if m:
        exponent = m.group("e") or m.group("pow")
        mantissa = Decimal(m.group("mantissa"))
        if exponent:
            return Number(Fraction(mantissa.scaleb(int(exponent))), "scientific")
        return Number(Fraction(mantissa), "integer" if m.group("mantissa").lstrip("+-").isdigit() else "decimal")
    m = _POWER_OF_TEN.fullmatch(t)
    if m:
        return Number(Fraction(10) ** int(m.group("pow")), "scientific")
    m = _FRACTION.fullmatch(t)
    if m and int(m.group("b") or m.group("d")) != 0:
        value = Fraction(int(m.group("a") or m.group("c")), int(m.group("b") or m.group("d")))
        return Number(-value if m.group("sign") == "-" else value, "fraction")
    return None


def numbers_match(p: Number, g: Number, rel_tol: Fraction = Fraction(1, 10**6)) -> bool | None:
    """Equal values match; exact forms (integers, fractions) that differ do not. With an
    exponent on either side the comparison is relative: math-verify rounds to 6 decimal
    places, so every value below 5e-7 (Minerva's 2.88e-19 J) would equal every other.
    Decimals that differ go to math-verify (None): its rounding decides."""
    if p.value == g.value:
        return True
    if "scientific" in (p.kind, g.kind):
        return abs(p.value - g.value) <= rel_tol * abs(g.value)
    return False if {p.kind, g.kind} <= {"integer", "fraction"} else None


def quick_verdict(pred: str, golds: Sequence[str]) -> bool | None:
    """Decide without math-verify when that is safe: True on a trivially equal answer or an
    equal number, False when pred and every gold are numbers that `numbers_match` rejects;
    None: ask math-verify."""
    p, p_num = normalize_trivially(pred), as_number(pred)
    decided_false = p_num is not None
    for gold in golds:
        g_num = as_number(gold)
        if p == normalize_trivially(gold):
            return True
        verdict = numbers_match(p_num, g_num) if p_num is not None and g_num is not None else None
        if verdict:
            return True
        decided_false = decided_false and verdict is False
    return False if decided_false else None


def wrap_for_math_verify(answer: str) -> str:
    """Gold and extracted answers as math-verify's LaTeX extractor expects them: e-notation
    expanded, inner dollars dropped (OlympiadBench's "8$,$4"), inside one \\boxed{}."""
    return f"\\boxed{{{expand_e_notation(answer.strip().replace('$', ''))}}}"


_VARIABLE_LHS = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*=(?P<rhs>[^=,]+)$")


def strip_variable(answer: str) -> str:
    """'x = 5' -> '5': one variable named on the left says nothing about the value.
    math-verify lowercases symbols, so OlympiadBench's gold 'N=n' would become the
    tautology n = n and accept any 'N = ...'."""
    m = _VARIABLE_LHS.match(answer)
    return m.group("rhs").strip() if m else answer


@lru_cache(maxsize=4096)
def _parse(text: str):
    """math-verify's parse with its signal timeout off; gold answers repeat, hence the cache."""
    from math_verify import parse

    return parse(wrap_for_math_verify(text), parsing_timeout=None)


def grade(pred: str, golds: Sequence[str]) -> bool:
    """True when `pred` (an extracted answer) is equivalent to any accepted gold answer.

    No time bound of its own: call it in a worker process that can be killed.
    """
    from math_verify import verify

    quick = quick_verdict(pred, golds)
    if quick is not None:
        return quick
    parsed_pred = _parse(strip_variable(pred))
    return any(verify(_parse(strip_variable(g)), parsed_pred, timeout_seconds=None) for g in golds)


# ---------------------------------------------------------------- worker processes

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_WARM_UP = [("\\frac{1}{2}", "0.5"), ("(1, 2]", "(1,2]"), ("x^2+1", "1+x^{2}"), ("3, 5", "5,3"), ("\\sqrt{2}", "2^{1/2}")]
_WORKER_CODE = "import sys; sys.path.insert(0, sys.argv[1]); from prefix_rft_pl.rewards import _worker_main; _worker_main(int(sys.argv[2]))"


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when its parent dies, even mid-computation
    (a stuck sympy call holds the GIL, so no Python-level watchdog could run)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_main(fd: int) -> None:
    """Grade (index, pred, golds) messages until the pipe closes; reply (index, ok, error)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    logging.disable(logging.WARNING)              # math-verify warns on every call with timeouts off
    for pred, gold in _WARM_UP:  # imports and lazy parser set-up are no answer's time
        grade(pred, [gold])
    conn = Connection(fd)
    conn.send(("ready", None, None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        index, pred, golds = msg
        try:
            conn.send((index, grade(pred, golds), None))
        except Exception as exc:  # noqa: BLE001  (any grading failure scores 0)
            conn.send((index, False, repr(exc)))


class _Worker:
    """One grading process and the answer it is working on.

    A fresh interpreter (not multiprocessing): spawn/forkserver re-import the caller's
    __main__ in every worker, fork is unsafe once CUDA or threads are up.
    """

    def __init__(self):
        self.conn, child = Pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE, _PACKAGE_ROOT, str(child.fileno())],
            pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
        )
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.task: int | None = None   # index of the answer being graded
        self.deadline = float("inf")

    def submit(self, index: int, pred: str, golds: Sequence[str], timeout_s: float) -> None:
        self.conn.send((index, pred, list(golds)))
        self.task, self.deadline = index, time.monotonic() + timeout_s

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.conn.close()


def _stop_workers(workers: list[_Worker]) -> None:
    """Ask idle workers to exit, kill busy or still starting ones."""
    for worker in workers:
        if worker.ready and worker.task is None:
            try:
                worker.conn.send(None)
                worker.process.wait(timeout=1)
            except (OSError, subprocess.TimeoutExpired):
                pass
        worker.kill()
    workers.clear()


class MathVerifyReward:
    """Reward = 1.0 when the last \\boxed{} answer matches any accepted answer, else 0.0.

    Args:
        num_workers: grading processes, started on the first call and reused.
        timeout_s: hard bound on the grading time of one answer (all its golds).
        startup_timeout_s: how long a new worker may take to import math-verify.
    """

    def __init__(self, num_workers: int = 2, timeout_s: float = 2.0, startup_timeout_s: float = 60.0):
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self._workers: list[_Worker] = []
        self._memo: OrderedDict[tuple, bool] = OrderedDict()  # (pred, golds) -> math-verify's verdict

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_workers"] = []  # processes do not travel; the copy starts its own
        state["_memo"] = OrderedDict()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def close(self) -> None:
        _stop_workers(self._workers)

    def __call__(self, completions: Sequence[str], answers: Sequence[Sequence[str]]) -> RewardResult:
        if len(completions) != len(answers):
            raise ValueError(f"{len(completions)} completions but {len(answers)} answer lists")
        preds = [extract_boxed(c) for c in completions]
        statuses = ["no_answer" if p is None else "wrong" for p in preds]
        result = RewardResult([0.0] * len(preds), 0, 0, statuses.count("no_answer"), statuses)
        duplicates: dict[tuple, list[int]] = {}  # one math-verify call per distinct (pred, golds)
        for i, (pred, golds) in enumerate(zip(preds, answers)):
            key = (pred, tuple(golds))
            verdict = None if pred is None else self._memo.get(key, quick_verdict(pred, golds))
            if verdict is not None:
                result.rewards[i] = float(verdict)
                statuses[i] = "correct" if verdict else "wrong"
            elif pred is not None:
                duplicates.setdefault(key, []).append(i)
        if duplicates:
            self._grade_in_workers(deque((idx[0], *key) for key, idx in duplicates.items()), result)
        for key, (first, *rest) in duplicates.items():
            for i in rest:
                result.rewards[i], statuses[i] = result.rewards[first], statuses[first]
            result.num_timeouts += len(rest) * (statuses[first] == "timeout")
            result.num_errors += len(rest) * (statuses[first] == "error")
            if statuses[first] in ("correct", "wrong"):
                self._memo[key] = statuses[first] == "correct"
        while len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return result

    def _ensure_workers(self) -> None:
        if not self._workers:
            weakref.finalize(self, _stop_workers, self._workers)  # also runs at exit
        while len(self._workers) < self.num_workers:
            self._workers.append(_Worker())

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker()

    def _grade_in_workers(self, pending: deque, result: RewardResult) -> None:
        self._ensure_workers()
        num_left = len(pending)
        while num_left:
            for worker in self._workers:
                if worker.ready and worker.task is None and pending:
                    worker.submit(*pending.popleft(), self.timeout_s)
            now = time.monotonic()
            deadlines = [w.deadline for w in self._workers if w.task is not None]
            deadlines += [w.started + self.startup_timeout_s for w in self._workers if not w.ready]
            ready = wait([w.conn for w in self._workers], timeout=max(0.0, min(deadlines, default=now + 1.0) - now))
            for worker in list(self._workers):
                if worker.conn in ready:
                    num_left -= self._receive(worker, result)
            num_left -= self._expire(result, pending)

    def _receive(self, worker: _Worker, result: RewardResult) -> int:
        """Read one message from `worker`; return how many answers it settled."""
        try:
            index, ok, error = worker.conn.recv()
        except (EOFError, OSError):  # the worker died: its answer is an error
            index, ok, error = worker.task, False, "worker died"
            self._replace(worker)
            if index is None:
                return 0
        if index == "ready":
            worker.ready = True
            return 0
        worker.task, worker.deadline = None, float("inf")
        result.rewards[index] = float(ok)
        result.num_errors += error is not None
        result.statuses[index] = "error" if error is not None else "correct" if ok else "wrong"
        return 1

    def _expire(self, result: RewardResult, pending: deque) -> int:
        """Kill workers past their bound; return how many answers that settled."""
        now, settled = time.monotonic(), 0
        for worker in list(self._workers):
            if worker.task is not None and now >= worker.deadline:
                result.num_timeouts += 1
                result.statuses[worker.task] = "timeout"
                settled += 1
                self._replace(worker)
            elif not worker.ready and now >= worker.started + self.startup_timeout_s:
                self._replace(worker)
                if all(not w.ready for w in self._workers):  # nothing can grade: give up
                    result.num_errors += len(pending)
                    for index, _, _ in pending:
                        result.statuses[index] = "error"
                    settled += len(pending)
                    pending.clear()
        return settled

