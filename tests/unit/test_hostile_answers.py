"""What an RL-trained model may write, graded without a hang, a crash or an exception: each
hostile answer is decided within the time bound plus start-up slack, by the trainer's reward
(`MathVerifyReward.__call__`) and by the eval harness's grading (`runner.run_chunk`), and
the timeouts and errors are counted."""

from __future__ import annotations

import time

import pytest

from eval_harness.benchmarks import Problem
from eval_harness.config import EvalConfig
from eval_harness.runner import run_chunk
from prefix_rft_pl.rewards import MathVerifyReward
from prefix_rft_pl.types import Rollout

TIMEOUT_S = 1.0
STARTUP_SLACK_S = 5.0   # a killed worker's replacement imports math-verify (2 shared cores here)
MB = 2**20


def boxed(answer: str) -> str:
    return f"Reasoning... so the answer is \\boxed{{{answer}}}."


HOSTILE_ANSWERS = [boxed(a) for a in [
    # huge powers and exponents
    "10^{20000000}", "10^{999999999}", "9^{9^{9^{9}}}", "2^{2^{2^{2^{2^{2}}}}}", "10^{10^{10}}", "{10}^{10^{9}}",
    "2**10**9", "7^{7^{7^{7}}}", "1.5^{10^{8}}", "0.5^{10^{9}}", "10^{-999999999}", "e^{10^{10}}",
    # e-notation and long digit strings
    "1e1000000", "1e-1000000", "4.5e999999999", "3\\times10^{" + "9" * 4400 + "}", "1E+99999999",
    "9" * 4400, "9" * 100_000, "\\frac{" + "7" * 4400 + "}{3}", "0." + "3" * 10_000, "5" * 5000 + "." + "5" * 5000,
    # factorials, binomials, symbolic blow-ups
    "100000!", "(10^{9})!", "1000000!", "\\binom{10^{9}}{5\\cdot 10^{8}}", "(x+1)^{100000}", "(x+y+z)^{3000}",
    "\\sum_{k=1}^{10^{9}} k^{2}", "\\prod_{k=1}^{10^{7}} k",
    # deep nesting
    "{" * 5000 + "1" + "}" * 5000, "(" * 3000 + "1" + ")" * 3000, "\\frac{1}{" * 500 + "2" + "}" * 500,
    "\\sqrt{" * 1000 + "2" + "}" * 1000, "2^{" * 200 + "2" + "}" * 200,
    # malformed LaTeX
    "\\frac{1}{", "\\left( 1, 2", "}{}{", "\\begin{pmatrix} 1 & 2", "\\\\\\\\", "^^^^", "\\sqrt", "$$$$",
    "\\frac{}{}", "\\text{", "\x00\x01\ufffd", "\\\\frac{1}{2}}}}",
]] + [
    # megabyte strings
    boxed("1" * MB), boxed("x+" * (MB // 2) + "1"), "\\boxed{" + "{" * MB, "no box " * (MB // 7),
    "".join(f"\\boxed{{{i}}}" for i in range(MB // 12)), boxed("a" * MB),
]
GOLDS = ["5", "1, 2, 3", "2x+4y-3=0"]
STATUSES = {"correct", "wrong", "timeout", "error", "no_answer"}


def test_the_hostile_set_is_large():
    assert len(HOSTILE_ANSWERS) >= 40


@pytest.fixture(scope="module")
def reward():
    fn = MathVerifyReward(num_workers=2, timeout_s=TIMEOUT_S)
    fn(["\\boxed{x+1}"] * 2, [["x"]] * 2)   # workers up before timing
    yield fn
    fn.close()


@pytest.mark.slow
def test_each_hostile_answer_is_decided_within_the_bound_by_the_trainers_reward(reward):
    slow, statuses = [], []
    for i, completion in enumerate(HOSTILE_ANSWERS):
        start = time.monotonic()
        result = reward([completion], [[GOLDS[i % len(GOLDS)]]])
        elapsed = time.monotonic() - start
        statuses += result.statuses
        assert result.rewards == [0.0] and result.statuses[0] in STATUSES
        if elapsed > TIMEOUT_S + STARTUP_SLACK_S:
            slow.append((completion[:60], round(elapsed, 1)))
    assert not slow
    counts = {s: statuses.count(s) for s in STATUSES}
    print("hostile answers, trainer's reward:", counts)
    assert sum(counts.values()) == len(HOSTILE_ANSWERS)


class ScriptedEngine:
    """Rollout i of a call is token [i]: the tokenizer below turns it into hostile answer i."""

    def generate(self, requests, sampling):
        n = sum(r.num_samples for r in requests)
        return [Rollout([i], [0.0], "stop") for i in range(n)]


class HostileTokenizer:
    def batch_decode(self, token_ids, skip_special_tokens=True):
        return [HOSTILE_ANSWERS[ids[0]] for ids in token_ids]


@pytest.mark.slow
def test_the_eval_harness_grades_the_hostile_set_within_the_bound_and_counts(reward):
    cfg = EvalConfig(ckpt="m", benchmarks=["hostile"], max_new_tokens=8)
    problems = [Problem(str(p), "p", [GOLDS[p]]) for p in range(len(GOLDS))]
    items = [(i % len(GOLDS), i // len(GOLDS)) for i in range(len(HOSTILE_ANSWERS))]
    items.sort()
    start = time.monotonic()
    records = run_chunk(ScriptedEngine(), HostileTokenizer(), reward, cfg, "hostile", 0, items, problems,
                        prompts=[[1]] * len(problems))
    elapsed = time.monotonic() - start
    assert len(records) == len(HOSTILE_ANSWERS) and not any(r["correct"] for r in records)
    assert {r["status"] for r in records} <= STATUSES
    to_workers = sum(r["status"] == "timeout" for r in records)   # each at most one bound on one of 2 workers
    assert elapsed < (to_workers / 2 + 1) * TIMEOUT_S + STARTUP_SLACK_S
    print("hostile answers, eval harness:", {s: sum(r["status"] == s for r in records) for s in STATUSES})
