"""Grading throughput of `MathVerifyReward` (answers per second), adversarial answers included.

    python benchmarks/grading_throughput.py [--workers 2] [--timeout 2] [--adversarial 8] [--pool 2048]

Workload: for every problem of ../shared/benchmarks (a small built-in set when absent),
the gold answer as a model would box it (correct), the gold plus one (wrong: a full
math-verify parse and compare), and an answer without a box; then `--adversarial`
answers that sympy cannot finish: power towers (9^(9^(9^9))), which the in-process size
screen decides at once, and symbolic blow-ups ((x+k)^100000), which only the workers' time
bound stops; each must cost at most the time bound. The pool is started and warmed before
timing; its start-up is reported apart.

pass@k pool: 30 AIME24 problems x `--pool` samples (2,048 for pass@2048), a model's few
distinct answers per problem repeated, graded as the harness grades them (`run_chunk`: one
reward call per chunk of 256 samples, the memo kept across chunks).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from prefix_rft_pl.rewards import MathVerifyReward

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
ADVERSARIAL = "\\boxed{{9^{{9^{{9^{{{}}}}}}}}}"  # 9^(9^(9^k)), k >= 9: distinct, each unbounded for sympy
BLOW_UP = "\\boxed{{(x+{})^{{100000}}}}"       # distinct, sympy expands them for minutes
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


def pass_at_k_pool(num_samples: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """30 problems x `num_samples` completions: each a reasoning-length text ending in one of
    a dozen answers per problem (the gold in several forms, near misses, expressions, no box)."""
    import random

    rng = random.Random(seed)
    golds = [(str(p), [f"{p:03d}"]) for p in range(100, 130)]
    if (SHARED / "aime24.jsonl").is_file():
        from eval_harness.benchmarks import load_jsonl

        golds = [(p.answers[0], p.answers) for p in load_jsonl(SHARED / "aime24.jsonl")]
    filler = "Let us reason step by step. " * 60
    out = []
    for gold, answers in golds:
        n = int(gold) if gold.isdigit() else 7
        choices = [f"\\boxed{{{gold}}}", f"\\boxed{{{n:03d}}}", f"\\boxed{{{n}.0}}", f"\\boxed{{{n + 1}}}",
                   f"\\boxed{{{n - 7}}}", f"\\boxed{{{2 * n}}}", f"\\boxed{{\\frac{{{n}}}{{2}}}}",
                   f"\\boxed{{{n}\\sqrt{{2}}}}", f"\\boxed{{x = {n}}}", "\\boxed{m+n}", "no final answer",
                   f"\\boxed{{{n % 97}}}"]
        weights = [30, 3, 2, 8, 5, 4, 3, 3, 2, 2, 10, 3]
        out += [(filler + rng.choices(choices, weights)[0] + ".", answers) for _ in range(num_samples)]
    return out


def timed_in_chunks(reward: MathVerifyReward, items: list[tuple[str, list[str]]], chunk_size: int = 256):
    """Grade `items` as the harness does: one call per chunk, the memo kept between chunks."""
    reward._memo.clear()
    start = time.perf_counter()
    scores = []
    for i in range(0, len(items), chunk_size):
        chunk = items[i:i + chunk_size]
        scores += reward([c for c, _ in chunk], [a for _, a in chunk]).rewards
    return sum(scores), time.perf_counter() - start


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
    parser.add_argument("--pool", type=int, default=2048, help="samples per problem of the pass@k pool")
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

    pool = pass_at_k_pool(args.pool)
    correct, seconds = timed_in_chunks(reward, pool)
    print(f"pass@{args.pool} pool: {len(pool)} samples in {seconds:.2f} s = {len(pool) / seconds:.0f} samples/s "
          f"(correct {correct:.0f})")

    wrong_only = items[1::3]
    result, seconds = timed(reward, wrong_only)
    print(f"wrong answers only (all through math-verify): {len(wrong_only) / seconds:.0f} answers/s "
          f"(timeouts {result.num_timeouts})")

    adversarial = [(ADVERSARIAL.format(9 + i), ["5"]) for i in range(args.adversarial)]
    mixed = items + adversarial
    result, seconds = timed(reward, mixed)
    print(f"mix + {args.adversarial} adversarial: {len(mixed)} answers in {seconds:.1f} s = "
          f"{len(mixed) / seconds:.0f} answers/s (timeouts {result.num_timeouts})")

    bound = args.adversarial / args.workers * args.timeout
    result, seconds = timed(reward, adversarial)
    print(f"adversarial alone: {args.adversarial} answers in {seconds:.1f} s "
          f"(bound {bound:.1f} s = answers / workers x timeout; timeouts {result.num_timeouts})")
    blow_ups = [(BLOW_UP.format(1 + i), ["5"]) for i in range(args.adversarial)]
    result, seconds = timed(reward, blow_ups)
    print(f"symbolic blow-ups alone: {args.adversarial} answers in {seconds:.1f} s "
          f"(bound {bound:.1f} s; timeouts {result.num_timeouts}, errors {result.num_errors})")
    reward.close()


if __name__ == "__main__":
    main()
