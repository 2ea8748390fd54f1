"""Dense, time-ordered user sequences and the leave-one-out split.

Item ids become dense integers 1..n (0 is padding for the models); users keep their order of
first appearance. Each user's sequence is sorted by (timestamp, position in file), so equal
timestamps keep the file's order and splits are stable across runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from tools.data.id_lookup import IdLookup
from tools.data.item_table import ItemTable
from tools.data.rows import Rows
from tools.data.schema import DataError, Item, RawDataset

Split = Literal["valid", "test"]
HistorySplit = Literal["valid", "test", "full"]
# Items held out at the end of each sequence: test predicts the last, valid the second-last;
# "full" holds nothing out (a live user's whole history).
HOLDOUT: dict[str, int] = {"test": 1, "valid": 2, "full": 0}
# ids up to this many are looked up in a dictionary (50 ns a lookup, built in a blink); above,
# by a binary search in the sorted ids that the prepared data keeps (IdLookup)
DICT_UP_TO = 200_000


def id_index(ids: Sequence[str], start: int) -> Mapping[str, int]:
    """Each id's position plus `start`."""
    if len(ids) <= DICT_UP_TO:
        return dict(zip(ids, range(start, start + len(ids)), strict=True))
    return IdLookup.of(ids, start)


class Ragged(Rows[np.ndarray]):
    """Rows of one flat array cut at `offsets` (one more than rows), each row a view made when
    asked for: a million views cost a second to make, and on a memory-mapped array most of a
    minute (np.split)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        self.flat: np.ndarray = flat.view(np.ndarray)  # no copy: still the mapped pages
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def of(cls, rows: Sequence[np.ndarray], dtype: type) -> Ragged:
        if isinstance(rows, Ragged):
            return rows
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        flat: np.ndarray = np.concatenate(list(rows)).astype(dtype, copy=False) if len(rows) else np.empty(0, dtype=dtype)
        return cls(flat, np.concatenate([[0], np.cumsum(lengths)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _at(self, row: int) -> np.ndarray:
        view: np.ndarray = self.flat[self.offsets[row] : self.offsets[row + 1]]
        return view

    def __iter__(self) -> Iterator[np.ndarray]:
        bounds = self.offsets.tolist()
        return (self.flat[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True))

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class SequenceDataset:
    """Lists given for `items`, `sequences` or `ratings` are kept as an ItemTable and Ragged rows."""

    name: str
    items: ItemTable  # items[i - 1] is dense item i
    user_ids: list[str]
    sequences: Ragged  # dense item ids, oldest first
    user_features: dict[str, dict[str, str]] = field(default_factory=dict)
    min_core: int = 0  # the k-core filter it was built with, so a run can rebuild it
    ratings: Ragged | None = None  # each interaction's rating, parallel to `sequences`; None: data without ratings
    lookups: dict[str, IdLookup] = field(default_factory=dict)  # "items", "users": kept with prepared data

    def __post_init__(self) -> None:
        self.items = ItemTable.from_items(self.items)
        self.sequences = Ragged.of(self.sequences, np.int64)
        self.ratings = None if self.ratings is None else Ragged.of(self.ratings, np.float32)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @cached_property
    def item_index(self) -> Mapping[str, int]:
        stored = self.lookups.get("items")
        return stored if stored is not None else id_index(self.items.ids, 1)

    @cached_property
    def user_index(self) -> Mapping[str, int]:
        stored = self.lookups.get("users")
        return stored if stored is not None else id_index(self.user_ids, 0)

    def item(self, dense_id: int) -> Item:
        return self.items[dense_id - 1]

    def history(self, user_id: str, split: HistorySplit = "test") -> np.ndarray:
        """The items a user saw before the split's target (the model's input)."""
        if user_id not in self.user_index:
            raise KeyError(f"unknown user {user_id!r} in dataset {self.name}")
        seq = self.sequences[self.user_index[user_id]]
        return seq[: len(seq) - HOLDOUT[split]]

    def target(self, user_id: str, split: Split = "test") -> int:
        """The held-out item the split predicts for a user."""
        seq = self.sequences[self.user_index[user_id]]
        return int(seq[len(seq) - HOLDOUT[split]])

    def split(self, split: Split) -> tuple[list[np.ndarray], np.ndarray]:
        """Inputs and targets for every user: valid predicts the second-last item from what
        precedes it, test predicts the last item from everything before it."""
        cut = HOLDOUT[split]
        inputs = [seq[:-cut] for seq in self.sequences]
        targets = np.array([seq[-cut] for seq in self.sequences], dtype=np.int64)
        return inputs, targets

    def train_sequences(self) -> list[np.ndarray]:
        """Sequences with the validation and test items held out."""
        return [seq[:-2] for seq in self.sequences]

    def user_ratings(self, user_id: str) -> dict[str, float]:
        """A user's rating of each item they rated, the latest where they rated one twice
        (empty for an unknown user or data without ratings)."""
        row = self.user_index.get(user_id)
        if self.ratings is None or row is None:
            return {}
        # time order: a later rating of the same item overwrites the earlier one
        return {self.item(int(d)).id: float(r) for d, r in zip(self.sequences[row], self.ratings[row], strict=True)}

    def rating_totals(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(sum, count) of each dense item's ratings, one per user (their latest), or None
        for data without ratings."""
        if self.ratings is None or not len(self.sequences):
            return None
        lengths = self.sequences.lengths()
        users = np.repeat(np.arange(len(lengths)), lengths)
        items, ratings = self.sequences.flat, self.ratings.flat.astype(np.float64)
        # the last occurrence of each (user, item) pair, as user_ratings keeps it
        pairs = users * (self.num_items + 1) + items
        _, first_from_end = np.unique(pairs[::-1], return_index=True)
        last = len(pairs) - 1 - first_from_end
        sums = np.bincount(items[last], weights=ratings[last], minlength=self.num_items + 1)
        return sums, np.bincount(items[last], minlength=self.num_items + 1)

    def popularity(self) -> np.ndarray:
        """Training-split interaction counts per dense id (index 0 is padding, count 0)."""
        flat, offsets = self.sequences.flat, self.sequences.offsets
        counts = np.bincount(flat, minlength=self.num_items + 1)
        # less each row's held-out positions (valid and test: its last two, where it has them)
        for back in range(1, HOLDOUT["valid"] + 1):
            held = offsets[1:] - back
            counts -= np.bincount(flat[held[held >= offsets[:-1]]], minlength=self.num_items + 1)
        return counts


def k_core(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Repeatedly drop users and items with fewer than k interactions."""
    while k > 1:
        user_counts = frame["user_id"].map(frame["user_id"].value_counts())
        item_counts = frame["item_id"].map(frame["item_id"].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            break
        frame = frame[keep]
    return frame


def build_sequences(raw: RawDataset, min_core: int = 0, min_length: int = 3) -> SequenceDataset:
    """Order, filter and index a raw dataset. Users with fewer than `min_length` interactions
    (too short for a train/valid/test split) are dropped after the k-core filter. Vectorised:
    20M interactions take seconds, not a Python loop per user."""
    # users keep their order of first appearance in the source, before any filtering
    codes, users = pd.factorize(raw.interactions["user_id"])
    frame = raw.interactions.assign(user_code=codes)
    frame = k_core(frame, min_core) if min_core else frame
    lengths = frame["user_id"].map(frame["user_id"].value_counts())
    frame = frame[lengths >= min_length]
    if frame.empty:
        raise DataError(f"{raw.name}: no user has {min_length} or more interactions after filtering")

    seen = set(pd.unique(frame["item_id"]))
    known = {item.id for item in raw.items}
    items = [item for item in raw.items if item.id in seen]
    # interactions with items the catalogue lacks still count; they get a bare record
    items += [Item(id=i, title=i) for i in sorted(seen - known)]
    dense = pd.Index([item.id for item in items]).get_indexer(frame["item_id"]) + 1

    user_code = frame["user_code"].to_numpy()
    # by user, then time, then file position: equal timestamps keep the file's order
    order = np.lexsort((frame["order"].to_numpy(), frame["timestamp"].to_numpy(), user_code))
    counts = np.bincount(user_code, minlength=len(users))
    kept = np.flatnonzero(counts)
    offsets = np.concatenate([[0], np.cumsum(counts[kept])])
    rated = "rating" in frame and frame["rating"].notna().any()
    user_ids = [str(users[c]) for c in kept]
    kept_users = set(user_ids)
    return SequenceDataset(
        name=raw.name,
        items=ItemTable.from_items(items),
        user_ids=user_ids,
        sequences=Ragged(dense.astype(np.int64)[order], offsets),
        user_features={u: f for u, f in raw.user_features.items() if u in kept_users},
        min_core=min_core,
        ratings=Ragged(frame["rating"].to_numpy(dtype=np.float32)[order], offsets) if rated else None,
    )
