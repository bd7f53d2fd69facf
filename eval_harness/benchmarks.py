"""Benchmarks: the paper's seven test sets by name, or any jsonl file of the same schema.

Every benchmark becomes a list of `Problem(id, problem, answers)`. Where the rows come
from, first match wins:
1. `<name>` is a path to a `.jsonl` file: a user's own benchmark, `{id, problem, answer}`
   per line (`answer` a list of accepted answers, or one string);
2. `--data-dir` holds `<name>.jsonl` (the normalised copies in ../shared/benchmarks);
3. the hub dataset of the registry below, mapped field by field (needs internet).
Hub rows are normalised the way the shared copies were: AMC floats stay strings ("27.0",
graded by the reward's decimal check), OlympiadBench's answer lists are joined with ", ".

A veRL / LUFFY evaluation parquet (`prompt`: chat messages, `reward_model.ground_truth`,
`data_source`; e.g. ../shared/real/luffy_valid.parquet) is evaluated straight from the file:
`--benchmarks PATH.parquet` becomes one benchmark per `data_source` (`PATH.parquet#aime`, ...,
see `expand_benchmarks`), named as in the registry where the source is one of the paper's
(aime -> aime24, math -> math500, olympiad_bench -> olympiadbench). The problem is the last
user message (the file's system turn is dropped; the template supplies the prompt, as for
every benchmark). LUFFY's file repeats every AIME problem 8 times and every AMC problem 4
times, its way of averaging over samples; here repeated rows are one problem, sampled
`num_samples` times (avg@32 on aime24 and amc by default), so that the problem count, and
every pass@k, is the benchmark's own (30 AIME24 problems, not 240).
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


# veRL / LUFFY `data_source` values -> the registry's names of the same benchmarks
DATA_SOURCE_NAMES = {"aime": "aime24", "amc": "amc", "math": "math500", "minerva": "minerva",
                     "olympiad_bench": "olympiadbench"}
PARQUET_LAYOUT = {"problem": "prompt", "answer": "reward_model.ground_truth"}


def _split_parquet_spec(spec: str) -> tuple[str, str] | None:
    """'PATH.parquet#source' -> (PATH.parquet, source); None for other specs."""
    path, sep, source = spec.rpartition("#")
    return (path, source) if sep and path.endswith(".parquet") else None


def parquet_sources(path: str | Path) -> list[str]:
    """The distinct `data_source` values of a parquet file, in order of first appearance."""
    import pyarrow.parquet as pq

    values = pq.read_table(path, columns=["data_source"]).column("data_source").to_pylist()
    return list(dict.fromkeys(values))


def expand_benchmarks(specs: list[str]) -> list[str]:
    """Every `PATH.parquet` spec -> `PATH.parquet#<data_source>`, one per source; others unchanged."""
    out = []
    for spec in specs:
        if spec.endswith(".parquet"):
            if not Path(spec).is_file():
                raise FileNotFoundError(f"benchmark file {spec} does not exist")
            out += [f"{spec}#{source}" for source in parquet_sources(spec)]
        else:
            out.append(spec)
    return out


def load_parquet(path: str | Path, source: str) -> list[Problem]:
    """The problems of one `data_source` of a veRL parquet; repeated rows (same problem and
    answer) become one problem. Id: `extra_info.index` where the file has it, else the row."""
    import pyarrow.parquet as pq

    from datamodules.layouts import BadRow, parse_row

    problems: dict[tuple[str, tuple[str, ...]], Problem] = {}
    for i, row in enumerate(pq.read_table(path).to_pylist()):
        if row.get("data_source") != source:
            continue
        try:
            example = parse_row(row, PARQUET_LAYOUT, str(i), require_demos=False)
        except BadRow as bad:
            raise ValueError(f"{path} row {i} ({source}): {bad}") from None
        index = (row.get("extra_info") or {}).get("index")
        key = (example.problem, tuple(example.answers))
        problems.setdefault(key, Problem(str(i if index is None else index), example.problem, example.answers))
    if not problems:
        raise ValueError(f"{path} has no rows with data_source {source!r}; it has {parquet_sources(path)}")
    return list(problems.values())


def benchmark_name(spec: str) -> str:
    """Short name of a benchmark spec: the registry name, a file's stem, or a parquet's data source."""
    parquet = _split_parquet_spec(spec)
    if parquet:
        return DATA_SOURCE_NAMES.get(parquet[1], parquet[1])
    return Path(spec).stem if spec.endswith(".jsonl") else spec


def load_benchmark(spec: str, data_dir: str | Path | None = None) -> list[Problem]:
    """Problems of `spec` (a registry name, a .jsonl path or `PATH.parquet#source`); see the
    module docstring."""
    parquet = _split_parquet_spec(spec)
    if parquet:
        return load_parquet(*parquet)
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
