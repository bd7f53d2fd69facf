"""The false-reject classes of issue 20 (several boxes for a multi-valued gold, currency,
equations) graded correct, and the false accepts their fixes could open graded wrong:
permuted ordered tuples, swapped interval ends, one candidate among several boxes."""

from __future__ import annotations

import pytest

from prefix_rft_pl.answers import candidate_answers, extract_boxes, is_multi_valued
from prefix_rft_pl.rewards import grade_readings, quick_verdict, screen


def decide(completion: str, golds: list[str]) -> bool:
    """The verdict the reward gives: in-process screen first, else what a worker computes."""
    readings = candidate_answers(completion, golds)
    if not readings:
        return False
    status = screen(readings)
    return status == "correct" if status is not None else grade_readings(readings)


@pytest.mark.parametrize(("completion", "gold"), [
    ("\\boxed{1}, \\boxed{2} and \\boxed{3}", "\\{1,2,3\\}"),
    ("\\boxed{3}, \\boxed{1}, \\boxed{2}", "1, 2, 3"),
    ("\\boxed{(2, 2)} \\quad\\text{and}\\quad \\boxed{(6, 2)}", "(2, 2), (6, 2)"),
    ("first \\boxed{5}; in the end \\boxed{8, 4}", "8$,$4"),          # the last box alone still counts
])
def test_several_boxes_answer_a_multi_valued_gold(completion, gold):
    assert decide(completion, [gold])


@pytest.mark.parametrize(("completion", "gold"), [
    ("\\boxed{1} or maybe \\boxed{2}", "1"),             # single-valued gold: the last box only
    ("\\boxed{2}, \\boxed{1}", "(1, 2)"),                # an ordered tuple is one value
    ("\\boxed{1}, \\boxed{2}, \\boxed{3}, \\boxed{4}", "1, 2, 3"),   # an extra candidate spoils the set
    ("\\boxed{1}, \\boxed{2}", "1, 2, 3"),                # a missing value too
    ("\\boxed{(2, 1)}", "(1, 2)"),                       # permuted ordered tuple
    ("\\boxed{(6, 2), (2, 3)}", "(2, 2), (6, 2)"),
    ("\\boxed{(2, 1]}", "[1, 2)"),                       # swapped interval ends
    ("\\boxed{[2, 1)}", "[1, 2)"),
])
def test_no_false_accepts(completion, gold):
    assert not decide(completion, [gold])


def test_boxing_several_candidates_never_beats_boxing_one():
    gold = ["7"]
    for candidates in (["7", "8"], ["8", "7"], ["1", "7", "9"]):
        several = decide(" ".join(f"\\boxed{{{c}}}" for c in candidates), gold)
        assert several == decide(f"\\boxed{{{candidates[-1]}}}", gold)


@pytest.mark.parametrize(("pred", "gold"), [("18.90", "\\$18.90"), ("36", "\\$36"), ("32348", "\\$32,\\!348"),
                                            ("\\$18.90", "18.90"), ("32,348", "\\$32,\\!348")])
def test_math500_currency_golds_answered_plainly_are_correct(pred, gold):
    assert quick_verdict(pred, [gold]) is True
    assert decide(f"\\boxed{{{pred}}}", [gold])


def test_currency_does_not_make_near_misses_correct():
    assert not decide("\\boxed{18.91}", ["\\$18.90"])
    assert not decide("\\boxed{3234}", ["\\$32,\\!348"])


@pytest.mark.parametrize(("pred", "gold", "expected"), [
    ("y=-\\frac{1}{2}x+\\frac{3}{4}", "2x+4y-3=0", True),
    ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}", True),
    ("y=-\\frac{1}{2}x+\\frac{5}{4}", "2x+4y-3=0", False),   # another line
    ("0=0", "2x+4y-3=0", False),                             # a tautology is no answer
    ("N=n+1", "N=n", False),                                  # still no tautology from lowercasing
    ("x = 5", "5", True),
])
def test_equations(pred, gold, expected):
    assert decide(f"\\boxed{{{pred}}}", [gold]) is expected


def test_multi_valued_golds():
    assert [is_multi_valued(g) for g in ("1, 2", "\\{1,2,3\\}", "(2, 2), (6, 2)", "8$,$4")] == [True] * 4
    assert [is_multi_valued(g) for g in ("(1, 2)", "[1,2)", "\\$32,\\!348", "1,000", "x")] == [False] * 5


def test_extract_boxes_reads_separate_boxes_in_order():
    # the inner box, as extract_boxed
    assert extract_boxes("\\boxed{1} b \\boxed{\\boxed{2}} c \\fbox{3}") == ["1", "2", "3"]
    assert extract_boxes("\\boxed{1} and \\boxed{2") == []   # truncated last box: no answer
