"""Typed records shared by every loader, model and tool.

A loader turns a source (RecBole atomic files, GroupLens raw files, Amazon or Yelp JSON lines,
a generic table) into one `RawDataset`: the item catalogue as `Item` records and the
interactions as a pandas frame (a million pydantic objects would cost seconds and gigabytes).
`tools.data.sequences` turns that into dense, time-ordered sequences for the models.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tools.titles import titled

# Columns of RawDataset.interactions, in this order. `order` is the row's position in its
# source file: the stable tie-break for equal timestamps (77% of ML-1M ratings tie).
INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp", "order")


class DataError(ValueError):
    """A source that cannot be read as promised: names the file, line or mismatch."""


class Item(BaseModel):
    """One catalogue entry. `attributes` maps an attribute type to its values, always a tuple
    so that multi-valued (genre) and single-valued (city, price) attributes read alike."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Item id as written in the source")
    title: str
    year: int | None = Field(default=None, description="Release or publication year")
    attributes: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    description: str | None = None

    def text(self) -> str:
        """The line embedded by the text index and shown to the LLM."""
        parts = [titled(self.title, self.year)]
        parts += [f"{kind}: {', '.join(values)}" for kind, values in self.attributes.items() if values]
        if self.description:
            parts.append(self.description)
        return "; ".join(parts)


class RawDataset(BaseModel):
    """What every loader returns."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    items: list[Item]
    interactions: pd.DataFrame = Field(description=f"columns {INTERACTION_COLUMNS}")
    user_features: dict[str, dict[str, str]] = Field(default_factory=dict)


def interactions_frame(rows: Iterable[tuple[str, str, float, int]]) -> pd.DataFrame:
    """Build the interaction frame from (user, item, rating, timestamp) rows in file order."""
    frame = pd.DataFrame(list(rows), columns=list(INTERACTION_COLUMNS[:4]))
    frame["user_id"] = frame["user_id"].astype(str)
    frame["item_id"] = frame["item_id"].astype(str)
    frame["rating"] = frame["rating"].astype("float32")
    frame["timestamp"] = frame["timestamp"].astype("int64")
    frame["order"] = range(len(frame))
    return frame
