"""Grading throughput of `MathVerifyReward` (answers per second), adversarial answers included.

    python benchmarks/grading_throughput.py [--workers 2] [--timeout 2] [--adversarial 8]

Workload: for every problem of ../shared/benchmarks (a small built-in set when absent),
the gold answer as a model would box it (correct), the gold plus one (wrong: a full
math-verify parse and compare), and an answer without a box; then `--adversarial`
answers that sympy cannot finish (9^(9^(9^9))), which must each cost at most the time
bound. The pool is started and warmed before timing; its start-up is reported apart.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from prefix_rft_pl.rewards import MathVerifyReward

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
ADVERSARIAL = "\\boxed{{9^{{9^{{9^{{{}}}}}}}}}"  # 9^(9^(9^k)), k >= 9: distinct, each unbounded for sympy
FALLBACK = [("025", ["25"]), ("\\frac{1}{2}", ["0.5"]), ("4.5e33", ["4.5 \\times 10^{33}"]), ("(1, 2]", ["(1,2]"])]


def workload() -> list[tuple[str, list[str]]]:
    """(completion, accepted answers) triples per problem: correct, wrong, no answer."""
    golds = FALLBACK * 100
    if SHARED.is_dir():
        from eval_harness.benchmarks import load_jsonl

        golds = [(p.answers[0], p.answers) for f in sorted(SHARED.glob("*.jsonl")) for p in load_jsonl(f)]
    out = []
    for gold, answers in golds:
        out += [(f"So the answer is \\boxed{{{gold}}}.", answers),
                (f"So the answer is \\boxed{{{gold} + 1}}.", answers),
                ("I could not finish.", answers)]
    return out


def timed(reward: MathVerifyReward, items: list[tuple[str, list[str]]]):
    """Grade `items` with an empty verdict memo: every distinct answer is really graded."""
    reward._memo.clear()
    start = time.perf_counter()
    result = reward([c for c, _ in items], [a for _, a in items])
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=2.0, help="hard bound per answer, seconds")
    parser.add_argument("--adversarial", type=int, default=8)
    args = parser.parse_args()

    reward = MathVerifyReward(num_workers=args.workers, timeout_s=args.timeout)
    start = time.perf_counter()
    reward(["\\boxed{x+1}"] * args.workers, [["x"]] * args.workers)
    print(f"pool start-up (import + warm-up, not timed below): {time.perf_counter() - start:.1f} s")

    items = workload()
    result, seconds = timed(reward, items)
    print(f"realistic mix: {len(items)} answers in {seconds:.1f} s = {len(items) / seconds:.0f} answers/s "
          f"(correct {sum(result.rewards):.0f}, no answer {result.num_no_answer}, "
          f"timeouts {result.num_timeouts}, errors {result.num_errors})")

    wrong_only = items[1::3]
    result, seconds = timed(reward, wrong_only)
    print(f"wrong answers only (all through math-verify): {len(wrong_only) / seconds:.0f} answers/s "
          f"(timeouts {result.num_timeouts})")

    adversarial = [(ADVERSARIAL.format(9 + i), ["5"]) for i in range(args.adversarial)]
    mixed = items + adversarial
    result, seconds = timed(reward, mixed)
    print(f"mix + {args.adversarial} adversarial: {len(mixed)} answers in {seconds:.1f} s = "
          f"{len(mixed) / seconds:.0f} answers/s (timeouts {result.num_timeouts})")

    result, seconds = timed(reward, adversarial)
    bound = args.adversarial / args.workers * args.timeout
    print(f"adversarial alone: {args.adversarial} answers in {seconds:.1f} s "
          f"(bound {bound:.1f} s = answers / workers x timeout; timeouts {result.num_timeouts})")
    reward.close()


if __name__ == "__main__":
    main()
