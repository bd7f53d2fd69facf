"""Rewards: answer extraction, the SPEC 4 grading pitfalls with real math-verify, and the
worker pool's hard time bound."""

from __future__ import annotations

import pickle
import time

import pytest

from prefix_rft_pl.rewards import (
    MathVerifyReward,
    expand_e_notation,
    extract_boxed,
    grade,
    quick_verdict,
)

# sympy expands it for minutes: only the time bound stops it (no size screen catches it)
ADVERSARIAL = "so the answer is \\boxed{(x+1)^{100000}}"
# unbounded for sympy (9^(9^(9^9))), decided in process by the size screen
TOWER = "so the answer is \\boxed{9^{9^{9^{9}}}}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the answer is \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),      # last box wins
        ("\\boxed{\\frac{a^{2}}{b_{1}}}", "\\frac{a^{2}}{b_{1}}"),       # nested braces
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),                           # escaped braces are content
        ("\\fbox{7}", "7"),
        ("so \\boxed 5$ done", "5"),
        ("no box here", None),
        ("\\boxed{3} and \\boxed{\\frac{1}{", None),                     # truncated last box
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_expand_e_notation_keeps_words_and_plain_numbers():
    assert expand_e_notation("4.5e33") == "4.5\\times10^{33}"
    assert expand_e_notation("1.2E-5 m") == "1.2\\times10^{-5} m"
    assert expand_e_notation("2e") == "2e"
    assert expand_e_notation("x_1e3") == "x_1e3"
    assert expand_e_notation("3.25") == "3.25"


def test_quick_verdict():
    assert quick_verdict("25", ["025"]) is True            # zero-padded AIME
    assert quick_verdict("27", ["27.0"]) is True           # AMC float
    assert quick_verdict("4.5\\times10^{33}", ["4.5e33"]) is True
    assert quick_verdict("24", ["25", "0025"]) is False    # plain integers: decided here
    assert quick_verdict("\\frac{2}{4}", ["1/2"]) is True  # exact fractions
    assert quick_verdict("\\frac{3}{4}", ["1/2"]) is False
    assert quick_verdict("24.5", ["25"]) is None           # math-verify's rounding decides
    assert quick_verdict("0.3333333", ["\\frac{1}{3}"]) is None
    # exponents compare relatively: math-verify's 6-decimal rounding equates all tiny values
    assert quick_verdict("1.325e-27", ["2.88e-19"]) is False
    assert quick_verdict("2.88 \\times 10^{-19} \\text{ J}", ["2.88e-19"]) is True
    assert quick_verdict("\\left( 3, 5 \\right)", ["(3,5)"]) is True


@pytest.mark.parametrize(
    ("pred", "golds"),
    [
        ("\\frac{1}{2}", ["0.5"]),
        ("25", ["025"]),
        ("27", ["27.0"]),
        ("4.5 \\times 10^{33}", ["4.5e33"]),                 # Minerva e-notation gold
        ("4.5e33", ["4.5 \\times 10^{33}"]),                 # ... and e-notation prediction
        ("5, 3", ["3, 5"]),                                  # OlympiadBench multi-answer
        ("(-\\infty, 3]", ["(-\\infty,3]"]),                 # interval
        ("336", ["336^\\circ"]),
        ("\\sqrt{2}/2", ["nope", "\\frac{\\sqrt{2}}{2}"]),   # any accepted answer counts
        ("x = 5", ["5"]),
        ("8, 4", ["8$,$4"]),                                 # OlympiadBench's inner dollars
    ],
)
def test_grade_accepts_equivalent(pred, golds):
    assert grade(pred, golds)


@pytest.mark.parametrize(
    ("pred", "golds"),
    [("4.6 \\times 10^{33}", ["4.5e33"]), ("(-\\infty, 3)", ["(-\\infty,3]"]), ("3", ["3, 5"]), ("26", ["025"]),
     ("N=n+1", ["N=n"]),   # math-verify lowercases symbols: 'N=n' alone would be a tautology
     ("8", ["8$,$4"])],
)
def test_grade_rejects_different(pred, golds):
    assert not grade(pred, golds)


def test_no_box_scores_zero_without_workers():
    reward = MathVerifyReward()
    result = reward(["I think it is 5", "\\boxed{5}", "\\boxed{4}"], [["5"], ["5"], ["5"]])
    assert result.rewards == [0.0, 1.0, 0.0]
    assert (result.num_no_answer, result.num_timeouts, result.num_errors) == (1, 0, 0)
    assert reward._workers == []  # all decided by the fast path


@pytest.fixture(scope="module")
def reward():
    fn = MathVerifyReward(num_workers=2, timeout_s=1.0)
    yield fn
    fn.close()


@pytest.mark.slow
def test_pool_grades_and_is_reused(reward):
    completions = ["\\boxed{\\frac{1}{2}}", "\\boxed{4.5\\times 10^{33}}", "\\boxed{5,3}", "\\boxed{x+1}"]
    answers = [["0.5"], ["4.5e33"], ["3, 5"], ["2"]]
    assert reward(completions, answers).rewards == [1.0, 1.0, 1.0, 0.0]
    pids = [w.process.pid for w in reward._workers]
    result = reward(completions, answers)
    assert result.rewards == [1.0, 1.0, 1.0, 0.0]
    assert [w.process.pid for w in reward._workers] == pids


@pytest.mark.slow
def test_adversarial_answer_is_bounded_and_counted(reward):
    reward(["\\boxed{\\frac{1}{2}}"] * 2, [["2"]] * 2)  # workers up and warm before timing
    completions = ["\\boxed{\\frac{1}{2}}", "\\boxed{\\sqrt{4}}", ADVERSARIAL, ADVERSARIAL]
    start = time.monotonic()
    result = reward(completions, [["0.5"], ["2"], ["5"], ["5"]])
    elapsed = time.monotonic() - start
    assert result.rewards == [1.0, 1.0, 0.0, 0.0]
    assert (result.num_timeouts, result.num_errors) == (2, 0)
    assert elapsed < 3.0  # two 1 s bounds side by side; replacements start in the background
    again = reward([ADVERSARIAL, TOWER], [["5"], ["5"]])  # timeouts are remembered; the tower is screened
    assert again.statuses == ["timeout", "wrong"] and again.num_timeouts == 1
    after = reward(["\\boxed{\\frac{2}{4}}"], [["0.5"]])  # the replacements grade
    assert after.rewards == [1.0] and after.num_timeouts == 0
    assert all(w.process.poll() is None for w in reward._workers)


@pytest.mark.slow
def test_duplicates_are_graded_once_and_remembered(reward):
    completions = ["\\boxed{x+1}", "\\boxed{1+x}", "\\boxed{x+1}"]
    result = reward(completions, [["1+x"]] * 3)
    assert result.rewards == [1.0, 1.0, 1.0]
    assert reward._memo[(("x+1", ("1+x",)),)] == "correct"


def test_memo_hit_skips_the_fast_path(monkeypatch):
    import prefix_rft_pl.rewards as rewards

    reward = MathVerifyReward()
    reward._memo[(("7", ("7",)),)] = "wrong"   # a remembered verdict wins, unchecked
    monkeypatch.setattr(rewards, "screen", lambda readings: pytest.fail("fast path ran on a memo hit"))
    assert reward(["\\boxed{7}"], [["7"]]).statuses == ["wrong"]


def test_pickled_reward_drops_its_workers(reward):
    copy = pickle.loads(pickle.dumps(reward))
    assert copy._workers == [] and copy.timeout_s == reward.timeout_s
    assert copy(["\\boxed{025}"], [["25"]]).rewards == [1.0]
