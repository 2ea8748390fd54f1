"""The Yelp Open Dataset (academic JSON): `review.json` and `business.json`, JSON lines
(`yelp_academic_dataset_review.json` ... in the download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tools.data.loaders._io import field, json_lines, number_field, unix_seconds
from tools.data.schema import DataError, Item, RawDataset, interactions_frame

# attributes.RestaurantsPriceRange2 is '1'..'4'; Yelp shows it as $..$$$$
PRICE_LEVELS = {"1": "$", "2": "$$", "3": "$$$", "4": "$$$$"}


def load_yelp(reviews: Path, businesses: Path | None = None, name: str = "yelp") -> RawDataset:
    interactions = _reviews(reviews)
    return RawDataset(name=name, interactions=interactions, items=_items(businesses) if businesses else [])


def _reviews(path: Path) -> pd.DataFrame:
    users, items, stars, dates, lines = [], [], [], [], []
    for line, record in json_lines(path):
        users.append(str(field(record, "user_id", path, line)))
        items.append(str(field(record, "business_id", path, line)))
        stars.append(number_field(record, "stars", path, line))
        date = field(record, "date", path, line)
        if not isinstance(date, str):
            raise DataError(f"{path}, line {line}: field 'date' should be 'YYYY-MM-DD HH:MM:SS', found {date!r}")
        dates.append(date)
        lines.append(line)
    # dates are parsed in one vectorised call; a bad one is reported with its own line
    parsed = pd.to_datetime(pd.Series(dates, dtype=str), format="%Y-%m-%d %H:%M:%S", errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise DataError(f"{path}, line {lines[row]}: date {dates[row]!r} is not 'YYYY-MM-DD HH:MM:SS'")
    seconds = unix_seconds(parsed, path, first_line=1)
    return interactions_frame(zip(users, items, stars, seconds.tolist(), strict=True))


def _items(path: Path) -> list[Item]:
    items: dict[str, Item] = {}
    for line, record in json_lines(path):
        business_id = str(field(record, "business_id", path, line))
        if business_id not in items:
            items[business_id] = Item(id=business_id, title=str(field(record, "name", path, line)).strip(), attributes=_attributes(record))
    return list(items.values())


def _attributes(record: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    categories = tuple(c.strip() for c in (record.get("categories") or "").split(",") if c.strip())
    attributes: dict[str, tuple[str, ...]] = {"category": categories}
    for key in ("city", "state"):
        if str(record.get(key) or "").strip():
            attributes[key] = (str(record[key]).strip(),)
    if record.get("stars") is not None:
        attributes["stars"] = (str(record["stars"]),)
    price = PRICE_LEVELS.get(str((record.get("attributes") or {}).get("RestaurantsPriceRange2")))
    if price:
        attributes["price"] = (price,)
    return attributes
