"""Where rows come from: local jsonl / json / parquet files and globs, a dataset saved with
`save_to_disk`, or a hub dataset id (`org/name?config=c&split=s`, split defaults to train;
a local dataset directory works the same way). Every source is read lazily, row by row.

JSON lines are read with the standard library, not with `datasets`' json builder: that
builder infers one arrow type per column and silently converts values (the string answer
"025" became the integer 25 in a test, a list-valued problem became a string), which both
corrupts zero-padded answers and hides the non-string rows that must be counted. Lines
stay raw bytes until a row is rendered, so shuffle buffers and resume fast-forwarding
never parse JSON. Parquet, `save_to_disk` and hub sources are typed and go through
`datasets` (streaming).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs


class MalformedFileError(ValueError):
    """A file that cannot be read as its format (e.g. a bad JSON line): stops the run."""


@dataclass(frozen=True)
class Source:
    kind: str                 # "jsonl" | "json_array" | "parquet" | "disk" | "hub"
    path: str                 # file path, directory, or hub id
    config: str | None = None
    split: str = "train"


@dataclass(frozen=True)
class RawRow:
    uid: str                  # "<source>:<row>" with the 0-based row index in that source
    payload: Any              # bytes (one JSON line, parsed by load_row) or a dict
    where: str                # human location for errors: "<file> line <n>" or "<source> row <n>"


def _file_kind(path: str) -> str:
    if path.endswith(".parquet"):
        return "parquet"
    if path.endswith(".jsonl"):
        return "jsonl"
    if path.endswith(".json"):
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
        return "json_array" if head.startswith(b"[") else "jsonl"
    raise ValueError(f"{path}: unknown file type (use .jsonl, .json or .parquet)")


DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet", ".csv", ".tsv", ".arrow", ".txt")
HUB_HINT = "a hub dataset is named org/name, e.g. org/name?split=train"


def looks_local(name: str) -> bool:
    """A path meant as a local one: starts with `.`, `/` or `~`, ends in a data file suffix,
    or its first component is an existing directory (`data/train` with `data/` present)."""
    first = name.split("/", 1)[0]
    return name.startswith((".", "/", "~")) or name.lower().endswith(DATA_SUFFIXES) or (
        "/" in name and os.path.isdir(first)
    )


def _directory_has_data(path: str) -> bool:
    return any(f.lower().endswith(DATA_SUFFIXES) for _, _, files in os.walk(path) for f in files)


def _resolve_one(spec: str) -> list[Source]:
    if "*" in spec or "[" in spec:  # a glob ("?" is kept for hub options)
        paths = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
        if not paths:
            raise FileNotFoundError(f"{spec}: the glob matches no file")
        return [Source(_file_kind(p), p) for p in paths]
    if os.path.isfile(os.path.expanduser(spec)):
        return [Source(_file_kind(os.path.expanduser(spec)), os.path.expanduser(spec))]
    name, _, options = spec.partition("?")
    query = {k: v[-1] for k, v in parse_qs(options).items()}
    unknown = sorted(set(query) - {"config", "split"})
    if unknown:
        raise ValueError(f"{spec}: unknown options {unknown} (use ?config=...&split=...)")
    split, path = query.get("split", "train"), os.path.expanduser(name)
    if os.path.isdir(path):
        if any(os.path.exists(os.path.join(path, f)) for f in ("state.json", "dataset_dict.json")):
            return [Source("disk", path, split=split)]
        if not _directory_has_data(path):
            raise FileNotFoundError(f"{spec}: the directory holds no data file (*{', *'.join(DATA_SUFFIXES)}) "
                                    "and no save_to_disk dataset")
        return [Source("hub", path, query.get("config"), split)]  # a directory laid out like a hub dataset
    if looks_local(name):
        raise FileNotFoundError(f"{spec}: no such file or directory (read as a local path; {HUB_HINT})")
    return [Source("hub", name, query.get("config"), split)]


def resolve_sources(spec: list[str] | str | None) -> list[Source]:
    """Expand file paths, globs, dataset directories and hub ids into an ordered source list."""
    if spec is None:
        return []
    specs = [spec] if isinstance(spec, str) else list(spec)
    return [source for s in specs for source in _resolve_one(s)]


def _iter_jsonl(path: str) -> Iterator[RawRow]:
    with open(path, "rb") as f:
        row = 0
        for line_no, line in enumerate(f, 1):
            if line.strip():
                yield RawRow(f"{path}:{row}", line, f"{path} line {line_no}")
                row += 1


def _datasets_rows(source: Source) -> Iterator[Any]:
    import datasets

    if source.kind == "disk":
        loaded = datasets.load_from_disk(source.path)
        return iter(loaded[source.split] if isinstance(loaded, datasets.DatasetDict) else loaded)
    if source.kind == "parquet":
        stream = datasets.load_dataset("parquet", data_files=source.path, split="train", streaming=True)
    else:
        stream = datasets.load_dataset(source.path, name=source.config, split=source.split, streaming=True)
    # Not iter(stream): inside a DataLoader worker that would read only the worker's shards,
    # while every worker here walks the whole stream (see stream.chunked).
    return (dict(zip(batch, values)) for batch in stream.iter(batch_size=64) for values in zip(*batch.values()))


def source_name(source: Source) -> str:
    if source.kind in ("disk", "hub"):
        config = f"{source.config}/" if source.config else ""
        return f"{source.path}[{config}{source.split}]"
    return source.path


def iter_source(source: Source) -> Iterator[RawRow]:
    """The rows of one source, in file order."""
    if source.kind == "jsonl":
        yield from _iter_jsonl(source.path)
        return
    if source.kind == "json_array":
        with open(source.path, "rb") as f:
            try:
                rows = json.load(f)  # a JSON array document cannot be streamed: prefer jsonl
            except json.JSONDecodeError as err:
                raise MalformedFileError(f"{source.path} line {err.lineno}: malformed JSON: {err.msg}") from None
        if not isinstance(rows, list):
            raise MalformedFileError(f"{source.path}: expected a JSON array of objects or JSON lines")
        for i, row in enumerate(rows):
            yield RawRow(f"{source.path}:{i}", row, f"{source.path} row {i}")
        return
    name = source_name(source)
    for i, row in enumerate(_datasets_rows(source)):
        yield RawRow(f"{name}:{i}", row, f"{name} row {i}")


def count_rows(source: Source) -> int:
    """Number of rows, cheaply where the format allows (parquet metadata, dataset info)."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(source.path).metadata.num_rows
    if source.kind == "jsonl":
        with open(source.path, "rb") as f:
            return sum(1 for line in f if line.strip())
    if source.kind == "disk":
        import datasets

        loaded = datasets.load_from_disk(source.path)
        return len(loaded[source.split] if isinstance(loaded, datasets.DatasetDict) else loaded)
    return sum(1 for _ in iter_source(source))  # hub streams and JSON arrays: one pass


def load_row(raw: RawRow) -> Any:
    """The row as a Python object; a bad JSON line raises MalformedFileError naming file and line."""
    if not isinstance(raw.payload, bytes):
        return raw.payload
    try:
        return json.loads(raw.payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MalformedFileError(f"{raw.where}: malformed JSON: {err}") from None
