"""Every accepted answer of the seven real benchmark files, written as a model would write
it, grades correct, and a wrong answer is rejected for every problem (SPEC 4 pitfalls:
zero padding, floats, e-notation, multi-answers, intervals). Skipped without the files."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval_harness.benchmarks import load_jsonl
from prefix_rft_pl.rewards import MathVerifyReward

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"
FILES = ["aime24", "aime25", "amc", "amc23", "math500", "minerva", "olympiadbench"]

pytestmark = [
    pytest.mark.benchmarks,
    pytest.mark.slow,
    pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"{BENCHMARKS} is absent"),
]


@pytest.fixture(scope="module")
def reward():
    fn = MathVerifyReward(num_workers=2, timeout_s=5.0)
    yield fn
    fn.close()


@pytest.mark.parametrize("name", FILES)
def test_gold_answers_grade_correct_and_wrong_ones_do_not(name, reward):
    problems = load_jsonl(BENCHMARKS / f"{name}.jsonl")
    completions, answers, probes = [], [], []
    for p in problems:
        for gold in p.answers:
            completions.append(f"... the answer is \\boxed{{{gold}}}.")
            answers.append(p.answers)
            probes.append((p.id, gold, True))
        wrong = f"{p.answers[0]} + 1001"   # no accepted answer is its gold plus 1001
        completions.append(f"... the answer is \\boxed{{{wrong}}}.")
        answers.append(p.answers)
        probes.append((p.id, wrong, False))
    result = reward(completions, answers)
    failures = [
        f"{pid}: {answer!r} graded {status}, expected {'correct' if expected else 'wrong'}"
        for (pid, answer, expected), score, status in zip(probes, result.rewards, result.statuses)
        if (score == 1.0) != expected
    ]
    assert not failures, "\n".join(failures)
    assert result.num_errors == 0
