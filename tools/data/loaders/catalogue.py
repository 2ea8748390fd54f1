"""Your own catalogue, in one documented format (docs/catalogue.md): a folder holding

    items.{csv,jsonl,parquet}         item_id, title, optional year and description; any other
                                      column is an attribute, several values split by "|"
    interactions.{csv,jsonl,parquet}  user_id, item_id, timestamp (unix seconds or a date),
                                      optional rating

Both are read in chunks of CHUNK_ROWS rows, so 20M interactions load in bounded memory (ids are
kept as Arrow strings, not Python objects), and a bad row is named by its file and line (CSV
and JSON lines) or row (Parquet).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tools.data.loaders._io import json_lines, parse_year, require_columns, split_values, unix_seconds
from tools.data.schema import INTERACTION_COLUMNS, DataError, Item, RawDataset

ITEMS, INTERACTIONS = "items", "interactions"
SUFFIXES = (".csv", ".jsonl", ".parquet")
CHUNK_ROWS = 1_000_000
ITEM_FIELDS = ("item_id", "title", "year", "description")


def catalogue_files(directory: Path) -> tuple[Path, Path] | None:
    """(items, interactions) where `directory` holds the format, else None."""
    found = []
    for stem in (ITEMS, INTERACTIONS):
        matches = [directory / f"{stem}{suffix}" for suffix in SUFFIXES if (directory / f"{stem}{suffix}").is_file()]
        if len(matches) > 1:
            raise DataError(f"{directory}: more than one {stem} file ({', '.join(p.name for p in matches)}); keep one")
        found.append(matches[0] if matches else None)
    items, interactions = found
    return (items, interactions) if items is not None and interactions is not None else None


def load_catalogue(directory: Path, name: str | None = None) -> RawDataset:
    files = catalogue_files(directory)
    if files is None:
        raise DataError(f"{directory}: expected items.{{csv,jsonl,parquet}} and interactions.{{csv,jsonl,parquet}}")
    items_path, interactions_path = files
    return RawDataset(name=name or directory.name, items=_items(items_path), interactions=_interactions(interactions_path))


def _chunks(path: Path) -> Iterator[tuple[int, pd.DataFrame]]:
    """(line of the chunk's first row, the chunk with every column as text or its own type)."""
    if path.suffix == ".parquet":
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS)
            row = 1
            for batch in batches:
                yield row, batch.to_pandas()
                row += batch.num_rows
        except OSError as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from err
    elif path.suffix == ".jsonl":
        yield from _json_chunks(path)
    else:
        try:
            reader = pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=CHUNK_ROWS, encoding="utf-8")
            line = 2
            for chunk in reader:
                yield line, chunk
                line += len(chunk)
        except pd.errors.ParserError as err:
            raise DataError(f"{path}: malformed CSV: {str(err).removeprefix('Error tokenizing data. C error: ').strip()}") from err
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not valid UTF-8 ({err.reason}); convert it to UTF-8") from err
        except pd.errors.EmptyDataError as err:
            raise DataError(f"{path}: file is empty") from err


def _json_chunks(path: Path) -> Iterator[tuple[int, pd.DataFrame]]:
    """JSON lines parsed by pandas chunk by chunk; where pandas fails, the line-by-line reader
    finds and names the bad line."""
    line = 1
    try:
        for chunk in pd.read_json(path, lines=True, chunksize=CHUNK_ROWS, dtype=False):
            yield line, chunk
            line += len(chunk)
    except ValueError as err:
        for _ in json_lines(path):  # raises a DataError naming the line
            pass
        raise DataError(f"{path}: not valid JSON lines ({err})") from err


def _ids(frame: pd.DataFrame, column: str, path: Path, first_line: int) -> pd.Series:
    values = frame[column].astype("string[pyarrow]").str.strip()
    empty = (values.isna() | (values == "")).to_numpy()
    if empty.any():
        raise DataError(f"{path}, {_where(path, first_line + int(empty.argmax()))}: {column!r} is missing or empty")
    return values


def _where(path: Path, line: int) -> str:
    return f"row {line}" if path.suffix == ".parquet" else f"line {line}"


def _interactions(path: Path) -> pd.DataFrame:
    parts = []
    for first, chunk in _chunks(path):
        require_columns(chunk, path, ("user_id", "item_id", "timestamp"))
        part = pd.DataFrame({"user_id": _ids(chunk, "user_id", path, first), "item_id": _ids(chunk, "item_id", path, first)})
        part["rating"] = _ratings(chunk, path, first)
        part["timestamp"] = unix_seconds(chunk["timestamp"], path, first_line=first).to_numpy(dtype=np.int64)
        parts.append(part)
    if not parts or not sum(len(p) for p in parts):
        raise DataError(f"{path}: no interactions")
    frame = pd.concat(parts, ignore_index=True)
    frame["order"] = np.arange(len(frame))
    return frame[list(INTERACTION_COLUMNS)]


def _ratings(chunk: pd.DataFrame, path: Path, first: int) -> np.ndarray:
    if "rating" not in chunk:
        return np.full(len(chunk), np.nan, dtype=np.float32)
    values = pd.to_numeric(chunk["rating"].replace("", np.nan), errors="coerce")
    bad = (values.isna() & chunk["rating"].notna() & (chunk["rating"] != "")).to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise DataError(f"{path}, {_where(path, first + row)}: rating {chunk['rating'].iloc[row]!r} is not a number")
    return values.to_numpy(dtype=np.float32)


def _items(path: Path) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for first, chunk in _chunks(path):
        require_columns(chunk, path, ("item_id", "title"))
        ids = _ids(chunk, "item_id", path, first).tolist()
        attributes = [c for c in chunk.columns if c not in ITEM_FIELDS]
        columns = {c: chunk[c].tolist() if c in chunk else [None] * len(chunk) for c in (*ITEM_FIELDS[1:], *attributes)}
        for row, item_id in enumerate(ids):
            line = first + row
            if item_id in seen:
                raise DataError(f"{path}, {_where(path, line)}: item {item_id!r} again (first at {_where(path, seen[item_id])})")
            seen[item_id] = line
            year = _text(columns["year"][row])
            if year and parse_year(year) is None:
                raise DataError(f"{path}, {_where(path, line)}: year {year!r} is not a year")
            items.append(
                Item(
                    id=item_id,
                    title=_text(columns["title"][row]) or item_id,
                    year=parse_year(year) if year else None,
                    description=_text(columns["description"][row]) or None,
                    attributes={kind: split_values(columns[kind][row]) for kind in attributes},
                )
            )
    return items


def _text(cell: object) -> str:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return ""
    return str(cell).strip()
