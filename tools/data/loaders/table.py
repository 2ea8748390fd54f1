"""Any interaction table in CSV or Parquet, described by a column mapping. Item fields come
from a separate item table when one is given, else from each item's first row."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tools.data.loaders._io import parse_year, read_text, require_columns, split_values, unix_seconds
from tools.data.schema import DataError, Item, RawDataset, interactions_frame


class TableMapping(BaseModel):
    """Which column holds what. Only user, item and timestamp are required."""

    model_config = ConfigDict(extra="forbid")

    user: str
    item: str
    timestamp: str = Field(description="unix seconds, or a date pandas can parse (taken as UTC)")
    rating: str | None = None
    title: str | None = None
    year: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict, description="attribute type -> column")
    list_separator: str | None = Field(default="|", description="splits an attribute cell into values")
    delimiter: str | None = Field(default=None, description="CSV field separator (default: tab for .tsv, else ',')")


def load_table(path: Path, mapping: TableMapping, name: str | None = None, items: Path | None = None) -> RawDataset:
    frame = _read(path, mapping)
    require_columns(frame, path, [mapping.user, mapping.item, mapping.timestamp] + ([mapping.rating] if mapping.rating else []))
    for column in (mapping.user, mapping.item):
        empty = (frame[column].astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise DataError(f"{path}, line {int(empty.argmax()) + 2}: column {column!r} is empty")
    # line numbers assume one line per row (CSV without quoted newlines; Parquet rows count from 2)
    timestamps = unix_seconds(frame[mapping.timestamp], path, first_line=2)
    ratings = _ratings(frame, mapping.rating, path) if mapping.rating else [1.0] * len(frame)
    interactions = interactions_frame(
        zip(
            frame[mapping.user].astype(str).tolist(),
            frame[mapping.item].astype(str).tolist(),
            ratings,
            timestamps.tolist(),
            strict=True,
        )
    )
    catalogue = _catalogue(_read(items, mapping), mapping, items) if items else _catalogue(frame, mapping, path)
    return RawDataset(name=name or path.stem, interactions=interactions, items=catalogue)


def _read(path: Path, mapping: TableMapping) -> pd.DataFrame:
    if path.suffix == ".parquet":
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        frame = pd.read_parquet(path)
    elif path.suffix in (".csv", ".tsv", ".txt") or path.name.endswith((".csv.gz", ".tsv.gz")):
        text = read_text(path)
        try:
            sep = mapping.delimiter or ("\t" if ".tsv" in path.suffixes else ",")
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
        except pd.errors.ParserError as err:
            raise DataError(f"{path}: malformed CSV: {str(err).removeprefix('Error tokenizing data. C error: ').strip()}") from err
    else:
        raise DataError(f"{path}: unknown table format {path.suffix!r} (expected .csv, .tsv, .txt or .parquet)")
    if frame.empty:
        raise DataError(f"{path}: the table has no rows")
    return frame


def _ratings(frame: pd.DataFrame, column: str, path: Path) -> list[float]:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise DataError(f"{path}, line {row + 2}: rating {frame[column].iloc[row]!r} is not a number")
    return values.astype(float).tolist()


def _catalogue(frame: pd.DataFrame, mapping: TableMapping, path: Path) -> list[Item]:
    columns = [c for c in (mapping.title, mapping.year, *mapping.attributes.values()) if c]
    require_columns(frame, path, [mapping.item, *columns])
    items = []
    for row in frame.drop_duplicates(mapping.item)[[mapping.item, *columns]].itertuples(index=False):
        cells = dict(zip([mapping.item, *columns], row, strict=True))
        item_id = str(cells[mapping.item])
        attributes = {kind: split_values(cells[column], mapping.list_separator) for kind, column in mapping.attributes.items()}
        title = str(cells[mapping.title]).strip() if mapping.title else ""
        year = parse_year(cells[mapping.year]) if mapping.year else None
        items.append(Item(id=item_id, title=title or item_id, year=year, attributes=attributes))
    return items
