"""Amazon review data (2018, McAuley lab): a reviews file and a metadata file, both JSON lines,
optionally gzipped (`Books.json.gz`, `meta_Books.json.gz`). Used for Amazon-Book."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

from tools.data.loaders._io import field, json_lines, number_field, parse_year
from tools.data.schema import Item, RawDataset, interactions_frame

_TAG = re.compile(r"<[^>]+>")
# the metadata's price is free text and sometimes a scrap of page markup: keep real prices only
_PRICE = re.compile(r"^\$\s?\d[\d,]*(\.\d+)?( - \$\s?\d[\d,]*(\.\d+)?)?$")


def load_amazon(reviews: Path, meta: Path | None = None, name: str = "amazon") -> RawDataset:
    interactions = _reviews(reviews)
    return RawDataset(name=name, interactions=interactions, items=_items(meta) if meta else [])


def _reviews(path: Path) -> pd.DataFrame:
    rows = []
    for line, record in json_lines(path):
        rows.append(
            (
                str(field(record, "reviewerID", path, line)),
                str(field(record, "asin", path, line)),
                number_field(record, "overall", path, line),
                int(number_field(record, "unixReviewTime", path, line)),
            )
        )
    return interactions_frame(rows)


def _items(path: Path) -> list[Item]:
    items: dict[str, Item] = {}
    for line, record in json_lines(path):
        asin = str(field(record, "asin", path, line))
        if asin in items:
            # the 2018 metadata repeats some products verbatim: the first record wins
            continue
        items[asin] = Item(
            id=asin,
            title=_clean(record.get("title")) or asin,
            year=parse_year(_clean(record.get("date"))),
            attributes=_attributes(record),
            description=_clean(" ".join(_strings(record.get("description")))) or None,
        )
    return list(items.values())


def _attributes(record: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    attributes = {"category": tuple(c for c in map(_clean, _strings(record.get("category"))) if c)}
    brand = _clean(record.get("brand"))
    if brand:
        attributes["brand"] = (brand,)
    price = _clean(record.get("price"))
    if _PRICE.match(price):
        attributes["price"] = (price,)
    return attributes


def _strings(value: object) -> list[str]:
    """A list field that a few records write as a bare string."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def _clean(value: object) -> str:
    """Metadata text carries HTML entities and tags: plain, single-spaced text."""
    if value is None:
        return ""
    return " ".join(html.unescape(_TAG.sub(" ", str(value))).split())
