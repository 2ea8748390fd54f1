"""Item side information as integer tables, for the attribute-aware backbone.

An attribute type ("genre", "year", or any attribute the catalogue carries) becomes a
vocabulary of values and a padded [num_items + 1, width] table of value ids (0 = none), so a
model can embed an item's values with one lookup and a masked mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from tools.data.schema import DataError, Item

YEAR = "year"


def year_bucket(year: int | None) -> str | None:
    """Release years as decades ("1990s"): a year alone is too sparse to learn from."""
    return None if year is None else f"{year // 10 * 10}s"


def item_values(item: Item, attribute: str) -> tuple[str, ...]:
    if attribute == YEAR:
        bucket = year_bucket(item.year)
        return () if bucket is None else (bucket,)
    return item.attributes.get(attribute, ())


def available_attributes(items: Sequence[Item]) -> list[str]:
    kinds = sorted({kind for item in items for kind in item.attributes})
    return kinds + ([YEAR] if any(item.year is not None for item in items) else [])


class AttributeVocab(BaseModel):
    """Saved with a checkpoint so that value ids mean the same thing at load time."""

    attribute: str
    values: list[str]

    @classmethod
    def from_items(cls, items: Sequence[Item], attribute: str) -> AttributeVocab:
        known = available_attributes(items)
        if attribute not in known:
            raise DataError(f"unknown attribute {attribute!r}; this dataset has {known}")
        values = sorted({v for item in items for v in item_values(item, attribute)})
        return cls(attribute=attribute, values=values)

    def table(self, items: Sequence[Item]) -> np.ndarray:
        """Value ids per dense item id (row 0 is padding), right-padded with 0."""
        index = {v: i + 1 for i, v in enumerate(self.values)}
        rows = [[index[v] for v in item_values(item, self.attribute) if v in index] for item in items]
        width = max((len(r) for r in rows), default=0) or 1
        table = np.zeros((len(items) + 1, width), dtype=np.int64)
        for i, row in enumerate(rows, start=1):
            table[i, : len(row)] = row
        return table
