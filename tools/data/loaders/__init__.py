"""One loader per source format, each returning a `RawDataset`; `load_directory` picks the
right one from the files a dataset folder holds."""

from __future__ import annotations

from pathlib import Path

from tools.data.loaders.amazon import load_amazon
from tools.data.loaders.catalogue import catalogue_files, load_catalogue
from tools.data.loaders.grouplens import is_grouplens, load_grouplens, load_grouplens_1m, load_grouplens_100k
from tools.data.loaders.recbole import load_recbole
from tools.data.loaders.table import TableMapping, load_table
from tools.data.loaders.yelp import load_yelp
from tools.data.schema import DataError, RawDataset

__all__ = [
    "TableMapping",
    "load_amazon",
    "load_catalogue",
    "load_directory",
    "load_grouplens",
    "load_grouplens_1m",
    "load_grouplens_100k",
    "load_recbole",
    "load_table",
    "load_yelp",
]


def load_directory(directory: Path) -> RawDataset:
    """Load a dataset folder in any supported layout: the own-catalogue format (`items.*` and
    `interactions.*`, docs/catalogue.md), RecBole atomic (`NAME.inter`), GroupLens
    MovieLens (`u.data` or `ratings.dat`), Yelp (`*review.json` + `*business.json`) or Amazon
    (`meta_X.json[.gz]` + `X.json[.gz]`)."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder")
    if catalogue_files(directory):
        return load_catalogue(directory)
    if any(directory.glob("*.inter")):
        return load_recbole(directory)
    if is_grouplens(directory):
        return load_grouplens(directory)
    reviews, businesses = _one(directory, "*review.json"), _one(directory, "*business.json")
    if reviews and businesses:
        return load_yelp(reviews, businesses, name=directory.name)
    meta = _one(directory, "meta_*.json*")
    if meta:
        review_name = meta.name.removeprefix("meta_")
        return load_amazon(directory / review_name, meta, name=directory.name)
    files = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
    raise DataError(
        f"{directory}: no known dataset layout (items + interactions as .csv, .jsonl or .parquet; "
        "RecBole NAME.inter, GroupLens u.data or ratings.dat, "
        f"Yelp review.json + business.json, Amazon meta_X.json + X.json); it holds {files}"
    )


def _one(directory: Path, pattern: str) -> Path | None:
    matches = sorted(directory.glob(pattern))
    if len(matches) > 1:
        raise DataError(f"{directory}: more than one file matches {pattern}: {', '.join(p.name for p in matches)}")
    return matches[0] if matches else None
