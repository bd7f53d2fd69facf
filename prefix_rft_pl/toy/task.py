"""A synthetic maths task with step-by-step demonstrations that end in \\boxed{answer}.

Two digit-wise operations on D-digit strings (operand digits 0-4), no carries, so every
step is local:
    a#b : answer digit i = (a_i + b_i) mod 10      "easy" skill
    a&b : answer digit i = (a_i * b_i) mod 10      "hard" skill
A demonstration writes one step per digit, then the boxed answer:
    problem "314#203"  ->  "3#2=5 1#0=1 4#3=7 \\boxed{517}"

Why this testbed: Prefix-RFT helps where the base is *uncertain* at the tokens that carry
the missing skill (those are the high-entropy prefix tokens it keeps). The toy base is
made by SFT on correct `#` demonstrations and on `&` demonstrations whose step results
are random digits: the base then knows the format of `&` but is uniform over its
results, so it (almost) never solves `&` problems by sampling, while a demonstration
prefix shows it the right results.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

OPS = {"#": lambda x, y: (x + y) % 10, "&": lambda x, y: (x * y) % 10}
PROMPT_TEMPLATE = "Q: {problem}\nA: "
DIGITS = "01234"  # operand digits: 25-entry tables, which a tiny model learns in minutes on a CPU


@dataclass(frozen=True)
class Problem:
    a: str
    op: str
    b: str

    @property
    def text(self) -> str:
        return f"{self.a}{self.op}{self.b}"

    @property
    def answer(self) -> str:
        return "".join(str(OPS[self.op](int(x), int(y))) for x, y in zip(self.a, self.b))

    def solution(self, rng: random.Random | None = None) -> str:
        """Step-by-step demonstration; with `rng`, each step result is a random digit (noise)."""
        results = [str(rng.randrange(10)) if rng else r for r in self.answer]
        steps = [f"{x}{self.op}{y}={r}" for x, y, r in zip(self.a, self.b, results)]
        return " ".join(steps) + " \\boxed{" + "".join(results) + "}"


def all_problems(op: str, num_digits: int, rng: random.Random, count: int, alphabet: str = DIGITS) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    while len(out) < count:
        a = "".join(rng.choice(alphabet) for _ in range(num_digits))
        b = "".join(rng.choice(alphabet) for _ in range(num_digits))
        if (a, b) not in seen:
            seen.add((a, b))
            out.append(Problem(a, op, b))
    return out


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def build_task(
    out_dir: str | Path,
    num_digits: int = 3,
    num_train: int = 2000,
    num_heldout: int = 200,
    seed: int = 0,
    alphabet: str = DIGITS,
) -> dict[str, Path]:
    """Write the toy splits as `{problem, solution, answer}` jsonl files; return their paths.

    - `train.jsonl`: RL/SFT training prompts, both ops, correct demonstrations;
    - `base_sft.jsonl`: what the toy base is trained on (correct `#`, noisy `&`);
    - `heldout_easy.jsonl` / `heldout_hard.jsonl`: unseen `#` / `&` problems.
    """
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    files = {}
    splits: dict[str, list[dict]] = {"train": [], "base_sft": [], "heldout_easy": [], "heldout_hard": []}
    for op, heldout_name in (("#", "heldout_easy"), ("&", "heldout_hard")):
        problems = all_problems(op, num_digits, rng, num_train + num_heldout, alphabet)
        train, heldout = problems[:num_train], problems[num_train:]
        noise = rng if op == "&" else None
        for p in train:
            splits["train"].append({"problem": p.text, "solution": p.solution(), "answer": p.answer})
            splits["base_sft"].append({"problem": p.text, "solution": p.solution(noise), "answer": p.answer})
        for p in heldout:
            splits[heldout_name].append({"problem": p.text, "solution": p.solution(), "answer": p.answer})
    for name, rows in splits.items():
        rng.shuffle(rows)
        files[name] = out_dir / f"{name}.jsonl"
        write_jsonl(rows, files[name])
    return files


EVAL_SPLITS = ["val", "easy", "hard", "ood_easy", "ood_hard"]


def write_eval_splits(task_dir: str | Path) -> dict[str, Path]:
    """The toy's evaluation splits as eval-harness benchmarks (`{id, problem, answer: [...]}`
    per line) in `task_dir/eval/<split>.jsonl`, from the held-out files of `build_task`:

    - `val`: held-out problems 100-199 of both ops (learning-rate choice only);
    - `easy` / `hard`: held-out problems 0-99 (`#` / `&`, 3-digit operands, like training);
    - `ood_easy` / `ood_hard`: 100 problems with 2-digit operands, which no row trains on.
    """
    task_dir = Path(task_dir)

    def heldout(op: str) -> list[dict]:
        return [json.loads(line) for line in open(task_dir / f"heldout_{op}.jsonl")]

    rows = {"val": heldout("easy")[100:200] + heldout("hard")[100:200],
            "easy": heldout("easy")[:100], "hard": heldout("hard")[:100]}
    for split, op in (("ood_easy", "#"), ("ood_hard", "&")):
        problems = all_problems(op, 2, random.Random(12345 + (op == "&")), 100)
        rows[split] = [{"problem": p.text, "answer": p.answer} for p in problems]
    files = {}
    for split in EVAL_SPLITS:
        files[split] = task_dir / "eval" / f"{split}.jsonl"
        write_jsonl([{"id": f"{split}-{i}", "problem": r["problem"], "answer": [r["answer"]]}
                     for i, r in enumerate(rows[split])], files[split])
    return files
