"""A dataset's prepared form, kept with the run that was trained on it, so that opening a run
never reparses the raw files (minutes at 20M interactions):

    RUN/data/sequences.npy   every user's dense item ids, oldest first, end to end (int64)
    RUN/data/offsets.npy     where each user's sequence starts; one more than users (int64)
    RUN/data/ratings.npy     each interaction's rating, parallel to sequences.npy (if rated)
    RUN/data/items.parquet   the catalogue: item_id, title, year, description, one list column per attribute
    RUN/data/users.parquet   user_id, in dense order
    RUN/data/meta.json       name, k-core, attribute order, user features

The arrays are memory-mapped on load: processes opening the same run (server workers, Ray
workers) share one copy in the page cache instead of each building its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from tools.data.schema import DataError, Item
from tools.data.sequences import SequenceDataset, cut
from tools.io import atomic_dir, write_json

FORMAT_VERSION = 2
META = "meta.json"
# joins an item's values of one attribute: a million lists read back from Parquet took seconds,
# a million strings a fraction of one (the unit separator never occurs in a value)
JOIN = "\x1f"


class PreparedMeta(BaseModel):
    format: int = FORMAT_VERSION
    name: str
    min_core: int
    attributes: list[str]
    user_features: dict[str, dict[str, str]] = {}


def save_prepared(directory: Path, dataset: SequenceDataset) -> None:
    """Write `dataset` to `directory` atomically (a crash leaves no half-written data)."""
    attributes = list(dict.fromkeys(kind for item in dataset.items for kind in item.attributes))
    with atomic_dir(directory) as tmp:
        lengths = np.array([len(s) for s in dataset.sequences], dtype=np.int64)
        np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]))
        np.save(tmp / "sequences.npy", _concat(dataset.sequences, np.int64))
        if dataset.ratings is not None:
            np.save(tmp / "ratings.npy", _concat(dataset.ratings, np.float32))
        columns: dict[str, pa.Array] = {
            "item_id": pa.array([i.id for i in dataset.items], pa.string()),
            "title": pa.array([i.title for i in dataset.items], pa.string()),
            "year": pa.array([i.year for i in dataset.items], pa.int32()),
            "description": pa.array([i.description for i in dataset.items], pa.string()),
        }
        for kind in attributes:
            # null where an item lacks the attribute type, the joined values (maybe none) where it has it
            columns[f"attribute:{kind}"] = pa.array([_joined(i.attributes.get(kind)) for i in dataset.items], pa.string())
        pq.write_table(pa.table(columns), tmp / "items.parquet")
        pq.write_table(pa.table({"user_id": pa.array(dataset.user_ids, pa.string())}), tmp / "users.parquet")
        meta = PreparedMeta(name=dataset.name, min_core=dataset.min_core, attributes=attributes, user_features=dataset.user_features)
        write_json(tmp / META, meta.model_dump())


def is_prepared(directory: Path) -> bool:
    return (directory / META).is_file() and (directory / "sequences.npy").is_file()


def load_prepared(directory: Path) -> SequenceDataset:
    """The dataset `save_prepared` wrote, its arrays memory-mapped."""
    try:
        meta = PreparedMeta.model_validate_json((directory / META).read_text())
        offsets = np.load(directory / "offsets.npy")
        flat = np.load(directory / "sequences.npy", mmap_mode="r")
        rated = directory / "ratings.npy"
        ratings = np.load(rated, mmap_mode="r") if rated.exists() else None
        items = pq.read_table(directory / "items.parquet").to_pydict()
        users = pq.read_table(directory / "users.parquet").column("user_id").to_pylist()
    except (OSError, ValueError, pa.ArrowException) as err:
        raise DataError(f"{directory}: unreadable prepared data ({err}); delete the folder to rebuild it from the raw files") from err
    if meta.format != FORMAT_VERSION or len(offsets) != len(users) + 1 or offsets[-1] != len(flat):
        raise DataError(f"{directory}: prepared data of another format or cut short; delete the folder to rebuild it")
    return SequenceDataset(
        name=meta.name,
        items=_items(items, meta.attributes),
        user_ids=users,
        sequences=cut(flat, offsets),
        user_features=meta.user_features,
        min_core=meta.min_core,
        ratings=cut(ratings, offsets) if ratings is not None else None,
    )


def _items(columns: dict[str, list[Any]], attributes: list[str]) -> list[Item]:
    lists = [columns[f"attribute:{kind}"] for kind in attributes]
    # validated when the raw files were read: constructing a million records unchecked takes
    # a second instead of ten
    return [
        Item.model_construct(
            id=item_id,
            title=title,
            year=year,
            description=description,
            attributes={kind: _split(values[row]) for kind, values in zip(attributes, lists, strict=True) if values[row] is not None},
        )
        for row, (item_id, title, year, description) in enumerate(
            zip(columns["item_id"], columns["title"], columns["year"], columns["description"], strict=True)
        )
    ]


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)


def _joined(values: tuple[str, ...] | None) -> str | None:
    return None if values is None else JOIN.join(values)


def _split(joined: str) -> tuple[str, ...]:
    return tuple(joined.split(JOIN)) if joined else ()
