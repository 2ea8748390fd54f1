"""The canonical GroupLens MovieLens files, as unzipped from files.grouplens.org:
ML-100K (`u.data`, `u.item`, `u.user`) and ML-1M (`ratings.dat`, `movies.dat`, `users.dat`).
Item files are latin-1; ids are the numeric MovieLens ids."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tools.data.loaders._io import parse_year, read_delimited, read_text, split_lines
from tools.data.loaders.movielens import GENRES_100K, ml1m_user_labels, split_title_year
from tools.data.schema import DataError, Item, RawDataset, interactions_frame

RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def is_grouplens(directory: Path) -> bool:
    return (directory / "u.data").is_file() or (directory / "ratings.dat").is_file()


def load_grouplens(directory: Path) -> RawDataset:
    """ML-100K or ML-1M, whichever the folder holds."""
    if (directory / "u.data").is_file():
        return load_grouplens_100k(directory)
    if (directory / "ratings.dat").is_file():
        return load_grouplens_1m(directory)
    raise DataError(f"{directory}: neither u.data (ML-100K) nor ratings.dat (ML-1M) is there")


def load_grouplens_100k(directory: Path) -> RawDataset:
    return RawDataset(
        name="ml-100k",
        interactions=_ratings(directory / "u.data", "\t"),
        items=_items_100k(directory / "u.item"),
        user_features=_users(directory / "u.user", "|", ("age", "gender", "occupation", "zip")),
    )


def load_grouplens_1m(directory: Path) -> RawDataset:
    interactions = _ratings(directory / "ratings.dat", "::")
    users = _users(directory / "users.dat", "::", ("gender", "age", "occupation", "zip"))
    return RawDataset(
        name="ml-1m",
        interactions=interactions,
        items=_items_1m(directory / "movies.dat"),
        user_features={user: ml1m_user_labels(features) for user, features in users.items()},
    )


def _ratings(path: Path, sep: str) -> pd.DataFrame:
    text = read_text(path)
    if sep == "::":
        # pandas' fast parser takes one-character separators only: swap '::' for a control
        # character no field contains, so that a stray single ':' still fails as a bad number
        text, sep = text.replace("::", "\x1f"), "\x1f"
    frame = read_delimited(path, text, sep, RATING_COLUMNS, header=False, numbers=("rating", "timestamp"))
    return interactions_frame(zip(*(frame[column].tolist() for column in RATING_COLUMNS), strict=True))


def _items_100k(path: Path) -> list[Item]:
    items = []
    # id | title | release date | video release date | IMDb URL | 19 genre flags
    for number, parts in split_lines(path, read_text(path, "latin-1"), "|", 5 + len(GENRES_100K)):
        flags = parts[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataError(f"{path}, line {number}: genre flags must be 0 or 1, found {'|'.join(flags)}")
        title, year = split_title_year(parts[1])
        genres = tuple(genre for genre, flag in zip(GENRES_100K, flags, strict=True) if flag == "1")
        items.append(Item(id=parts[0], title=title, year=year or parse_year(parts[2]), attributes={"genre": genres}))
    return items


def _items_1m(path: Path) -> list[Item]:
    items = []
    for _, (movie_id, raw_title, genres) in split_lines(path, read_text(path, "latin-1"), "::", 3):
        title, year = split_title_year(raw_title)
        items.append(Item(id=movie_id, title=title, year=year, attributes={"genre": tuple(genres.split("|"))}))
    return items


def _users(path: Path, sep: str, columns: tuple[str, ...]) -> dict[str, dict[str, str]]:
    return {
        parts[0]: {column: value.strip() for column, value in zip(columns, parts[1:], strict=True) if value.strip()}
        for _, parts in split_lines(path, read_text(path), sep, 1 + len(columns))
    }
