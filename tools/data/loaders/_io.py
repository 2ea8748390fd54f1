"""Reading helpers shared by the loaders: every failure becomes a `DataError` that names the
file and, where there is one, the line."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tools.data.schema import DataError


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole file as text with LF line ends (`.gz` is decompressed). Decoding is strict so
    that a latin-1 file read as UTF-8 fails loudly instead of producing mojibake titles."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if not data.strip():
        raise DataError(f"{path}: file is empty")
    try:
        text = data.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        hint = " (the file looks latin-1 or cp1252 encoded; convert it to UTF-8)" if encoding == "utf-8" else ""
        raise DataError(f"{path}, line {line}: byte 0x{data[err.start]:02x} is not valid {encoding}{hint}") from err
    return text.replace("\r\n", "\n")


def read_delimited(path: Path, text: str, sep: str, names: list[str], header: bool, numbers: tuple[str, ...]) -> pd.DataFrame:
    """A large delimited file (a million ratings) parsed by pandas' C engine: `numbers` as
    numeric columns, the rest as non-empty strings. Blank lines are kept as rows so that row i
    is line i + 1 (+1 with a header) and every error can name its line."""
    first_line = 2 if header else 1
    lines = text.split("\n", first_line)
    sample = lines[first_line - 1] if len(lines) >= first_line else ""
    # pandas silently drops surplus fields when every row has them: check the first row here,
    # the C parser then rejects any later row whose field count differs
    found = len(sample.split(sep))
    if found != len(names):
        raise DataError(f"{path}, line {first_line}: expected {len(names)} fields ({', '.join(names)}), found {found}")
    try:
        frame = pd.read_csv(
            io.StringIO(text.rstrip("\n")),
            sep=sep,
            header=0 if header else None,
            names=names,
            index_col=False,
            dtype={name: str for name in names if name not in numbers},
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.ParserError as err:
        # pandas says "Expected 4 fields in line 7, saw 5": its line numbers are the file's
        raise DataError(f"{path}: malformed line: {str(err).removeprefix('Error tokenizing data. C error: ').strip()}") from err
    for name in names:
        if name not in numbers:
            empty = (frame[name] == "").to_numpy()
            if empty.any():
                raise DataError(f"{path}, line {int(empty.argmax()) + first_line}: field {name!r} is missing or empty")
        elif not pd.api.types.is_numeric_dtype(frame[name]):
            # the C parser leaves a column as text when any value is not a number: find it
            bad = pd.to_numeric(frame[name], errors="coerce").isna().to_numpy()
            value = frame[name].iloc[int(bad.argmax())]
            problem = "is missing or empty" if value == "" else f"{value!r} is not a number"
            raise DataError(f"{path}, line {int(bad.argmax()) + first_line}: field {name!r} {problem}")
    return frame


def split_lines(path: Path, text: str, sep: str, fields: int, header: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank line of a small file, exactly `fields` each,
    after the header line when there is one."""
    for number, line in enumerate(text.split("\n"), start=1):
        if (header and number == 1) or not line.strip():
            continue
        parts = line.split(sep)
        if len(parts) != fields:
            raise DataError(f"{path}, line {number}: expected {fields} {sep!r}-separated fields, found {len(parts)}")
        yield number, parts


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file (`.gz` allowed),
    streamed: Amazon and Yelp review files run to gigabytes."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    empty = True
    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            empty = False
            try:
                record = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError as err:
                raise DataError(f"{path}, line {number}: byte 0x{raw[err.start]:02x} is not valid utf-8 (JSON must be UTF-8)") from err
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {number}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise DataError(f"{path}, line {number}: expected a JSON object, found {type(record).__name__}")
            yield number, record
    if empty:
        raise DataError(f"{path}: file is empty")


def field(record: dict[str, Any], key: str, path: Path, line: int) -> Any:
    """A required field of a JSON record."""
    if record.get(key) in (None, ""):
        raise DataError(f"{path}, line {line}: required field {key!r} is missing or empty")
    return record[key]


def number_field(record: dict[str, Any], key: str, path: Path, line: int) -> float:
    """A required numeric field of a JSON record (a JSON number, not a string or a boolean)."""
    value = field(record, key, path, line)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{path}, line {line}: field {key!r} should be a number, found {value!r}")
    return float(value)


def parse_year(value: object) -> int | None:
    """The first year in a field as sources write it ('1995', '1995.0', '01-Jan-1995',
    'September 4, 2012', '2010-05-01'); None when it holds none (ML-100K has 'unknown', and 'V'
    in RecBole's copy)."""
    match = re.search(r"(?<!\d)([12]\d{3})(?!\d)", str(value))
    return int(match[1]) if match else None


def unix_seconds(values: pd.Series, path: Path, first_line: int) -> pd.Series:
    """Timestamps as int64 seconds: numbers are taken as they are, text is parsed as a date
    (ISO 8601: '2014-10-11 03:34:02', '2014-10-11T03:34:02Z') in UTC."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("int64")
    numbers = pd.to_numeric(values, errors="coerce") if not pd.api.types.is_datetime64_any_dtype(values) else None
    if numbers is not None and numbers.notna().all():
        return numbers.astype("int64")
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    unparsed = parsed.isna().to_numpy()
    if unparsed.any():
        neither = unparsed & (numbers.isna().to_numpy() if numbers is not None else True)
        row = int((neither if neither.any() else unparsed).argmax())
        problem = "is neither a unix time nor a date" if neither.any() else "is a number among dates"
        raise DataError(f"{path}, line {row + first_line}: timestamp {values.iloc[row]!r} {problem}")
    return (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def require_columns(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> None:
    """A table's required columns, the missing ones named with the ones it has."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the table has {', '.join(map(str, frame.columns))}")


def split_values(cell: object, separator: str | None = "|") -> tuple[str, ...]:
    """An attribute cell's values: "a|b" in text (no separator: one value), or a list where JSON
    or Parquet hold one; empty parts and missing cells give none."""
    if isinstance(cell, list | tuple | np.ndarray):
        return tuple(str(v).strip() for v in cell if str(v).strip())
    if cell is None or (isinstance(cell, float) and pd.isna(cell)):
        return ()
    parts = str(cell).split(separator) if separator else [str(cell)]
    return tuple(p.strip() for p in parts if p.strip())
