"""Benchmarks: the paper's seven test sets by name, or any jsonl file of the same schema.

Every benchmark becomes a list of `Problem(id, problem, answers)`. Where the rows come
from, first match wins:
1. `<name>` is a path to a `.jsonl` file: a user's own benchmark, `{id, problem, answer}`
   per line (`answer` a list of accepted answers, or one string);
2. `--data-dir` holds `<name>.jsonl` (the normalised copies in ../shared/benchmarks);
3. the hub dataset of the registry below, mapped field by field (needs internet).
Hub rows are normalised the way the shared copies were: AMC floats stay strings ("27.0",
graded by the reward's decimal check), OlympiadBench's answer lists are joined with ", ".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answers: list[str]   # accepted final answers; the first is canonical


@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the hub and how its fields map onto `Problem`."""

    repo: str
    split: str
    problem_field: str
    answer_field: str
    id_field: str | None = None          # None: the row index
    config: str | None = None
    answer_fn: Callable[[Any], list[str]] | None = None   # raw answer value -> accepted answers


def _as_answers(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [str(value).strip()]


def _joined(value: Any) -> list[str]:
    """OlympiadBench: a list of final answers (multi-answer rows) -> one "a, b" answer."""
    parts = [str(v).strip().strip("$") for v in (value if isinstance(value, (list, tuple)) else [value])]
    return [", ".join(parts)]


REGISTRY: dict[str, HubSource] = {
    "aime24": HubSource("HuggingFaceH4/aime_2024", "train", "problem", "answer", "id"),
    "aime25": HubSource("math-ai/aime25", "test", "problem", "answer", "id"),
    "amc": HubSource("AI-MO/aimo-validation-amc", "train", "problem", "answer", "id"),   # 83: AMC12 2022+2023
    "amc23": HubSource("math-ai/amc23", "test", "question", "answer", "id"),
    "math500": HubSource("HuggingFaceH4/MATH-500", "test", "problem", "answer", "unique_id"),
    "minerva": HubSource("math-ai/minervamath", "test", "question", "answer"),
    "olympiadbench": HubSource(
        "Hothan/OlympiadBench", "train", "question", "final_answer", "id",
        config="OE_TO_maths_en_COMP", answer_fn=_joined,
    ),
}


def parse_row(row: dict[str, Any], index: int) -> Problem:
    """One jsonl row `{id, problem, answer}` -> Problem; a missing id becomes the row index."""
    missing = {"problem", "answer"} - row.keys()
    if missing:
        raise ValueError(f"row {index} has no {sorted(missing)} (keys: {sorted(row)})")
    return Problem(str(row.get("id", index)), row["problem"], _as_answers(row["answer"]))


def load_jsonl(path: str | Path) -> list[Problem]:
    with Path(path).open() as f:
        return [parse_row(json.loads(line), i) for i, line in enumerate(f) if line.strip()]


def load_hub(source: HubSource) -> list[Problem]:
    from datasets import load_dataset

    rows = load_dataset(source.repo, source.config, split=source.split)
    to_answers = source.answer_fn or _as_answers
    return [
        Problem(
            str(row[source.id_field]) if source.id_field and source.id_field in row else str(i),
            row[source.problem_field],
            to_answers(row[source.answer_field]),
        )
        for i, row in enumerate(rows)
    ]


def benchmark_name(spec: str) -> str:
    """Short name of a benchmark spec: the registry name, or a file's stem."""
    return Path(spec).stem if spec.endswith(".jsonl") else spec


def load_benchmark(spec: str, data_dir: str | Path | None = None) -> list[Problem]:
    """Problems of `spec` (a registry name or a .jsonl path); see the module docstring."""
    if spec.endswith(".jsonl"):
        if not Path(spec).is_file():
            raise FileNotFoundError(f"benchmark file {spec} does not exist")
        return load_jsonl(spec)
    if data_dir is not None and (Path(data_dir) / f"{spec}.jsonl").is_file():
        return load_jsonl(Path(data_dir) / f"{spec}.jsonl")
    if spec not in REGISTRY:
        where = f" and there is no {Path(data_dir) / (spec + '.jsonl')}" if data_dir else ""
        raise ValueError(f"unknown benchmark {spec!r}{where}; known: {sorted(REGISTRY)} or a .jsonl path")
    return load_hub(REGISTRY[spec])
