"""A dataset's prepared form, kept with the run that was trained on it, so that opening a run
never reparses the raw files (minutes at 20M interactions):

    RUN/data/sequences.npy   every user's dense item ids, oldest first, end to end (int64)
    RUN/data/offsets.npy     where each user's sequence starts; one more than users (int64)
    RUN/data/ratings.npy     each interaction's rating, parallel to sequences.npy (if rated)
    RUN/data/items.parquet   the catalogue: item_id, title, year, description, one list column per attribute
    RUN/data/users.parquet   user_id, in dense order
    RUN/data/meta.json       name, k-core, attribute order, user features
    RUN/data/members-N.npz   the N-th attribute's values and the rows of the items having each
    RUN/data/{items,users}_ordered.npy, _order.npy
                             past 200,000 ids: the ids sorted, and their positions (IdLookup)

The arrays are memory-mapped on load: processes opening the same run (server workers, Ray
workers) share one copy in the page cache instead of each building its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from tools.data.id_lookup import IdLookup
from tools.data.item_table import ItemTable
from tools.data.schema import DataError
from tools.data.sequences import Ragged, SequenceDataset
from tools.io import atomic_dir, write_json

FORMAT_VERSION = 2
META = "meta.json"


class PreparedMeta(BaseModel):
    format: int = FORMAT_VERSION
    name: str
    min_core: int
    attributes: list[str]
    user_features: dict[str, dict[str, str]] = {}


def save_prepared(directory: Path, dataset: SequenceDataset) -> None:
    """Write `dataset` to `directory` atomically (a crash leaves no half-written data)."""
    with atomic_dir(directory) as tmp:
        np.save(tmp / "offsets.npy", dataset.sequences.offsets)
        np.save(tmp / "sequences.npy", dataset.sequences.flat.astype(np.int64, copy=False))
        if dataset.ratings is not None:
            np.save(tmp / "ratings.npy", dataset.ratings.flat.astype(np.float32, copy=False))
        pq.write_table(dataset.items.table, tmp / "items.parquet")
        dataset.items.save_members(tmp)
        pq.write_table(pa.table({"user_id": pa.array(dataset.user_ids, pa.string())}), tmp / "users.parquet")
        for name, index in (("items", dataset.item_index), ("users", dataset.user_index)):
            if isinstance(index, IdLookup):  # a large catalogue's: opening the run then builds none
                index.save(tmp, name)
        meta = PreparedMeta(
            name=dataset.name, min_core=dataset.min_core, attributes=dataset.items.attributes, user_features=dataset.user_features
        )
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
        items = pq.read_table(directory / "items.parquet")
        users = pq.read_table(directory / "users.parquet").column("user_id").to_pylist()
    except (OSError, ValueError, pa.ArrowException) as err:
        raise DataError(f"{directory}: unreadable prepared data ({err}); delete the folder to rebuild it from the raw files") from err
    if meta.format != FORMAT_VERSION or len(offsets) != len(users) + 1 or offsets[-1] != len(flat):
        raise DataError(f"{directory}: prepared data of another format or cut short; delete the folder to rebuild it")
    return SequenceDataset(
        name=meta.name,
        items=ItemTable(items, meta.attributes, saved=directory),
        user_ids=users,
        sequences=Ragged(flat, offsets),
        user_features=meta.user_features,
        min_core=meta.min_core,
        ratings=Ragged(ratings, offsets) if ratings is not None else None,
        lookups={name: found for name, start in (("items", 1), ("users", 0)) if (found := IdLookup.load(directory, name, start))},
    )
