"""The paper's table on the toy, made fair, as a run of the reproduction harness:

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.toy_table

is `python -m eval_harness reproduce --model toy` with the fair protocol of issue 12: every row
of SPEC 3 from the toy base with the same budget (60 rollout batches of 16 prompts), its
learning rate chosen from one grid on the `val` split (held apart from the reported splits),
three seeds, and the out-of-distribution splits (2-digit operands) that no row trains on
(prefix_rft_pl/toy/task.py, `write_eval_splits`). The harness resumes; the table lands in
runs/toy_table/table.{md,json,png} and is copied to benchmarks/toy_table.{md,json,png}.
Extra arguments go to the harness (e.g. `--workers 3`, `--plan`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

FAIR = ["--model", "toy", "--seeds", "0", "1", "2", "--steps", "60", "--lrs", "1e-4", "3e-4", "1e-3", "3e-3",
        "--out", "runs/toy_table"]


def main(argv: list[str]) -> None:
    from eval_harness.reproduce import main as reproduce

    reproduce(FAIR + argv)
    if "--plan" not in argv:
        for suffix in (".md", ".json", ".png"):
            shutil.copy(Path("runs/toy_table") / f"table{suffix}", Path("benchmarks") / f"toy_table{suffix}")


if __name__ == "__main__":
    main(sys.argv[1:])
