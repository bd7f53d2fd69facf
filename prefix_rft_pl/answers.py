"""Answer text, before any maths: the boxes of a completion, what counts as trivially equal,
exact numbers, and the screens that keep every in-process step small (SPEC 2.3, 4).

Everything here runs in the trainer's or evaluator's own process, outside the grading
workers' hard time bound, so every function is linear in its input and refuses what it
cannot do cheaply: an answer longer than `QUICK_MAX_CHARS` skips the fast paths, a number
with more than `MAX_DIGITS` digits or an exponent over `MAX_EXPONENT` is not a "number"
here (math-verify decides it in a worker), and `too_big` spots numeric powers and
factorials whose value alone has more than `MAX_RESULT_DIGITS` digits (sympy would compute
them for minutes or hours, or exhaust memory). See docs/grading.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

BOX_COMMANDS = ("\\boxed", "\\fbox")
MAX_BOXES = 16             # boxes read back from the end of a completion (several boxes, one answer)
MAX_ANSWER_CHARS = 10_000  # a longer boxed answer is not graded: it scores 0 and counts as an error
QUICK_MAX_CHARS = 2_000    # longer answers skip the in-process fast paths
MAX_DIGITS = 1_000         # digits of a number the fast paths convert exactly (Python refuses > 4,300)
MAX_EXPONENT = 10_000      # |exponent| of a scientific number the fast paths evaluate exactly
MAX_RESULT_DIGITS = 10_000  # a numeric power or factorial with more digits than this is "too big"

_BRACES = re.compile(r"\\.|[{}]", re.DOTALL)
_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


# ---------------------------------------------------------------- boxes

def _box_at(text: str, start: int) -> tuple[str, int] | None:
    """(content, end) of the box command at `start`; None when unclosed or not a box."""
    pos = start + (6 if text.startswith("\\boxed", start) else 5)
    if text[pos:pos + 1] == " ":
        word = text[pos + 1:pos + 1 + MAX_ANSWER_CHARS].split("$")[0].split()
        return (word[0], pos + 1 + len(word[0])) if word else None
    if text[pos:pos + 1] != "{":
        return None
    depth = 0
    for m in _BRACES.finditer(text, pos):
        if m.group() == "{":
            depth += 1
        elif m.group() == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1:m.start()].strip(), m.end()
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in `text`, braces balanced.

    `\\{` and `\\}` inside the box are content, not delimiters. `\\boxed 5` (no braces)
    yields "5". A last box left unclosed (a truncated completion) yields None: an earlier
    box is an intermediate result, not the final answer. Linear in the text.
    """
    start = max(text.rfind(cmd) for cmd in BOX_COMMANDS)
    if start < 0:
        return None
    box = _box_at(text, start)
    return box[0] if box else None


def extract_boxes(text: str) -> list[str]:
    """Contents of the complete, separate boxes of `text` in order, at most the last
    `MAX_BOXES` (of nested boxes the innermost, as `extract_boxed` reads the last one); [] when
    the last box is unclosed.
    """
    starts = [m.start() for m in _BOX_START.finditer(text)]
    boxes: list[str] = []
    limit = len(text) + 1      # a box must end before the box after it starts
    for start in reversed(starts):
        if len(boxes) == MAX_BOXES:
            break
        box = _box_at(text, start)
        if box is None or box[1] > limit:
            if not boxes and box is None:
                return []      # the last box is unclosed: no answer
            continue           # an enclosing or broken box: the boxes after it stand
        boxes.append(box[0])
        limit = start
    return boxes[::-1]


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """`text` cut at every `sep` outside (), [], {} and \\{ \\}."""
    parts, depth, last = [], 0, 0
    for m in re.finditer(r"\\[{}]|[()\[\]{}]|" + re.escape(sep), text):
        token = m.group()
        if token == sep and depth == 0:
            parts.append(text[last:m.start()])
            last = m.end()
        elif token in ("(", "[", "{", "\\{"):
            depth += 1
        elif token in (")", "]", "}", "\\}"):
            depth = max(0, depth - 1)
    return [p.strip() for p in parts + [text[last:]]]


_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,(?:\\!)?\d{3})+(?:\.\d+)?")


def without_currency(text: str) -> str:
    """`\\$18.90` -> `18.90`: an escaped dollar is a currency sign, never maths mode."""
    return text.replace("\\$", "")


@lru_cache(maxsize=4096)
def is_multi_valued(gold: str) -> bool:
    """A gold listing several values ("1, 2, 3", "\\{1,2,3\\}", "(2, 2), (6, 2)"), which a
    model may answer with one box per value. An ordered tuple "(1, 2)", an interval and a
    number with thousands separators ("32,\\!348") are single values."""
    text = without_currency(gold).replace("$", "").strip()
    if text.startswith("\\{") and text.endswith("\\}"):
        text = text[2:-2]
    if _THOUSANDS.fullmatch(text.replace(" ", "")) and " " not in text:
        return False
    return len(split_top_level(text)) > 1


def candidate_answers(text: str, golds: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(answer, golds to compare it with) readings of a completion: the last box against
    every gold; with several boxes, also the boxes together ("a, b") against the
    multi-valued golds only. Boxing candidates never earns more than boxing one: the boxes
    together must equal the whole set. [] when there is no complete last box."""
    last = extract_boxed(text)
    if last is None:
        return []
    readings = [(last, tuple(golds))]
    multi = tuple(g for g in golds if is_multi_valued(g))
    if multi:
        boxes = extract_boxes(text)
        if len(boxes) > 1 and boxes[-1] == last:
            readings.append((", ".join(boxes), multi))
    return readings


# ---------------------------------------------------------------- trivial forms and numbers

_E_NOTATION = re.compile(r"(?<![\w\\.])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d+)(?![\w.])")
_TRIVIAL = re.compile(r"\s+|\\\$|\$|\\left|\\right|\\!|\\,|\\;|\\:|\\ ")


def expand_e_notation(text: str) -> str:
    """'4.5e33' -> '4.5\\times10^{33}' (math-verify reads the former as 4.5*e*33)."""
    return _E_NOTATION.sub(lambda m: f"{m.group(1)}\\times10^{{{m.group(2).lstrip('+')}}}", text)


def normalize_trivially(text: str) -> str:
    """Drop spacing, dollars (currency signs too), \\left/\\right and a trailing period:
    nothing that changes meaning."""
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


def _small_exponent(text: str | None) -> int | None:
    """The exponent as an int when it is within MAX_EXPONENT, else None."""
    if text is None or len(text.lstrip("+-")) > len(str(MAX_EXPONENT)):
        return None
    value = int(text)
    return value if abs(value) <= MAX_EXPONENT else None


def as_number(text: str) -> Number | None:
    """The exact value of a plain, fractional or scientific number (a trailing unit and
    thousands separators dropped), else None. Bounded: more than MAX_DIGITS digits or an
    exponent over MAX_EXPONENT is None (not a number these fast paths evaluate)."""
    if len(text) > QUICK_MAX_CHARS:
        return None
    plain = without_currency(text).strip().rstrip(".")
    if _THOUSANDS.fullmatch(plain):
        text = plain.replace(",", "").replace("\\!", "")
    t = _UNIT_SUFFIX.sub("", normalize_trivially(text))
    if len(t) > MAX_DIGITS and sum(ch.isdigit() for ch in t) > MAX_DIGITS:
        return None
    m = _SCIENTIFIC.fullmatch(t)
    if m:
        mantissa = Decimal(m.group("mantissa"))
        raw_exponent = m.group("e") or m.group("pow")
        if raw_exponent:
            exponent = _small_exponent(raw_exponent)
            return None if exponent is None else Number(Fraction(mantissa) * Fraction(10) ** exponent, "scientific")
        return Number(Fraction(mantissa), "integer" if m.group("mantissa").lstrip("+-").isdigit() else "decimal")
    m = _POWER_OF_TEN.fullmatch(t)
    if m:
        exponent = _small_exponent(m.group("pow"))
        return None if exponent is None else Number(Fraction(10) ** exponent, "scientific")
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
    None: ask math-verify. Answers over QUICK_MAX_CHARS are always None."""
    if len(pred) > QUICK_MAX_CHARS:
        return None
    p, p_num = normalize_trivially(pred), as_number(pred)
    decided_false = p_num is not None
    for gold in golds:
        if len(gold) > QUICK_MAX_CHARS:
            return None
        g_num = as_number(gold)
        if p == normalize_trivially(gold):
            return True
        verdict = numbers_match(p_num, g_num) if p_num is not None and g_num is not None else None
        if verdict:
            return True
        decided_false = decided_false and verdict is False
    return False if decided_false else None


# ---------------------------------------------------------------- size screen

_POWER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:\^|\*\*)\s*")
_E_POWER = re.compile(r"(?<![\w\\.])\d+(?:\.\d*)?[eE][+-]?(\d+)")
_FACTORIAL = re.compile(r"(?<![\w.])(\d+)\s*!")


def _exponent_text(text: str, pos: int) -> str | None:
    """The exponent starting at `pos`: one character, or a braced group (None if unclosed)."""
    if text[pos:pos + 1] != "{":
        return text[pos:pos + 1]
    depth = 0
    for m in _BRACES.finditer(text, pos):
        depth += {"{": 1, "}": -1}.get(m.group(), 0)
        if depth == 0:
            return text[pos + 1:m.start()]
    return None


def numeric_log10(text: str, depth: int = 0) -> float | None:
    """log10 of a plain number or a numeric power tower ("9^{9^{9}}"), inf when beyond
    floats; None for anything else (a symbol, a sum)."""
    text = text.strip()
    if depth > 50 or not text:
        return None
    m = _POWER.match(text)
    if m and m.end() < len(text):
        exponent_text = _exponent_text(text, m.end())
        if exponent_text is None or m.end() + len(exponent_text) + 2 * (text[m.end()] == "{") != len(text):
            return None
        exponent_log = numeric_log10(exponent_text, depth + 1)
        return None if exponent_log is None else _power_digits(float(m.group(1)), exponent_log)
    if re.fullmatch(r"[+-]?\d+(?:\.\d+)?", text):
        return math.log10(abs(float(text))) if float(text) else 0.0
    return None


def _power_digits(base: float, exponent_log: float) -> float:
    """log10 |base^exponent| (digits of the value, or of its reciprocal), from log10 |exponent|."""
    scale = abs(math.log10(base)) if base > 0 else 0.0
    return math.inf if exponent_log > 300 else 10 ** exponent_log * scale


def too_big(text: str) -> bool:
    """True when `text` holds a numeric power (`10^{20000000}`, `9^{9^{9^{9}}}`, `1e1000000`)
    or factorial whose value has more than MAX_RESULT_DIGITS digits. Linear in the text."""
    for m in _E_POWER.finditer(text):
        if len(m.group(1)) > 6 or int(m.group(1)) > MAX_RESULT_DIGITS:
            return True
    for m in _FACTORIAL.finditer(text):
        if len(m.group(1)) > 5 or int(m.group(1)) > MAX_RESULT_DIGITS // 4:
            return True
    for m in _POWER.finditer(text):
        if m.end() >= len(text):
            continue
        exponent_text = _exponent_text(text, m.end())
        exponent_log = None if exponent_text is None else numeric_log10(exponent_text)
        if exponent_log is not None and _power_digits(float(m.group(1)), exponent_log) > MAX_RESULT_DIGITS:
            return True
    return False


# ---------------------------------------------------------------- math-verify's input

def wrap_for_math_verify(answer: str) -> str:
    """Gold and extracted answers as math-verify's LaTeX extractor expects them: e-notation
    expanded, currency signs and inner dollars dropped (OlympiadBench's "8$,$4"), inside
    one \\boxed{}."""
    return f"\\boxed{{{expand_e_notation(without_currency(answer.strip()).replace('$', ''))}}}"


_VARIABLE_LHS = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*=(?P<rhs>[^=,]+)$")


def strip_variable(answer: str) -> str:
    """'x = 5' -> '5': one variable named on the left says nothing about the value.
    math-verify lowercases symbols, so OlympiadBench's gold 'N=n' would become the
    tautology n = n and accept any 'N = ...'."""
    m = _VARIABLE_LHS.match(answer)
    return m.group("rhs").strip() if m else answer


def is_equation(answer: str) -> bool:
    """An equation that is not 'variable = value' ("2x+4y-3=0"): compared as an equation."""
    return "=" in strip_variable(answer).replace("\\leq", "").replace("\\geq", "")

