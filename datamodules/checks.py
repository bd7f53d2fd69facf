"""Checks before any row is streamed: every source has rows, and has the columns its layout reads.

Without them, an empty file surfaces as "rank 0 of 1 has no rows" and a file with other
column names as one warning per row and then "a whole data epoch without a usable row";
here both are one error naming the file, the fields the layout expects and the columns
found. A parquet file's schema is read from its footer; other sources are judged by their
first `SAMPLE_ROWS` rows (a JSON lines file may hold rows of several shapes, so a field
counts as present when any sampled row has it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from datamodules.sources import MalformedFileError, Source, iter_source, load_row, source_name

log = logging.getLogger(__name__)

SAMPLE_ROWS = 64


class EmptyDataError(ValueError):
    """Every source of a set is empty."""


class ColumnsError(ValueError):
    """A source lacks a column its layout reads; names the file, the expected fields and the columns found."""


def _paths(row: dict, prefix: str = "") -> Iterable[str]:
    """Dotted paths of a row's fields, nested objects included (`reward_model.ground_truth`)."""
    for key, value in row.items():
        yield prefix + str(key)
        if isinstance(value, dict):
            yield from _paths(value, f"{prefix}{key}.")


def _arrow_paths(fields: Iterable[Any], prefix: str = "") -> Iterable[str]:
    import pyarrow as pa

    for f in fields:
        yield prefix + f.name
        if pa.types.is_struct(f.type):
            yield from _arrow_paths(f.type, f"{prefix}{f.name}.")


def source_columns(source: Source) -> tuple[bool, set[str] | None]:
    """(whether the source has any row, its field paths); paths are None when no sampled row
    is an object (such rows are counted as `not_an_object` while streaming)."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(source.path)
        return parquet.metadata.num_rows > 0, set(_arrow_paths(parquet.schema_arrow))
    has_rows, paths, seen_object = False, set(), False
    for n, raw in enumerate(iter_source(source)):
        if n == SAMPLE_ROWS:
            break
        has_rows = True
        try:
            row = load_row(raw)
        except MalformedFileError:
            continue  # reported with its line number when the stream reaches it
        if isinstance(row, dict):
            seen_object = True
            paths.update(_paths(row))
    return has_rows, paths if seen_object else None


def expected_fields(mapping: dict[str, str], require_demos: bool) -> dict[str, str]:
    """Role -> field path of the fields every row must have."""
    roles = ["problem", "answer", "uid"] + (["demos"] if require_demos else [])
    return {role: mapping[role] for role in roles if role in mapping}


def missing_columns_message(name: str, mapping: dict[str, str], layout: Any, found: set[str],
                            require_demos: bool, sampled: bool) -> str | None:
    """The error for a source without the layout's fields, or None when it has them all."""
    expected = expected_fields(mapping, require_demos)
    missing = {role: path for role, path in expected.items() if path not in found}
    if not missing:
        return None
    columns = sorted(p for p in found if "." not in p)
    where = f" (in its first {SAMPLE_ROWS} rows)" if sampled else ""
    return (
        f"{name}: the layout {layout!r} reads {expected} (role: field), but the file has columns {columns}{where}; "
        f"missing: {missing}. Name the file's fields with a layout mapping: data.init_args.layout: "
        f"{{problem: <field>, demos: <field>, answer: <field>}} (a dotted path reads a nested field)"
    )


def check_sources(sources: list[Source], mapping: dict[str, str], layout: Any, require_demos: bool,
                  what: str) -> None:
    """Raise for a set whose sources are all empty or for a source without the layout's fields;
    warn about single empty sources among others. `what` names the set ("train_files")."""
    empty = []
    for source in sources:
        has_rows, found = source_columns(source)
        if not has_rows:
            empty.append(source_name(source))
        elif found is not None:
            message = missing_columns_message(source_name(source), mapping, layout, found, require_demos,
                                              sampled=source.kind != "parquet")
            if message:
                raise ColumnsError(message)
    if sources and len(empty) == len(sources):
        raise EmptyDataError(f"{what}: no rows: {', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty")
    if empty:
        log.warning("%s: %s %s empty (no rows)", what, ", ".join(empty), "is" if len(empty) == 1 else "are")
