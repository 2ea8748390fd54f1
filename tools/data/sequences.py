"""Dense, time-ordered user sequences and the leave-one-out split.

Item ids become dense integers 1..n (0 is padding for the models); users keep their order of
first appearance. Each user's sequence is sorted by (timestamp, position in file), so equal
timestamps keep the file's order and splits are stable across runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from tools.data.schema import DataError, Item, RawDataset

Split = Literal["valid", "test"]
HistorySplit = Literal["valid", "test", "full"]
# Items held out at the end of each sequence: test predicts the last, valid the second-last;
# "full" holds nothing out (a live user's whole history).
HOLDOUT: dict[str, int] = {"test": 1, "valid": 2, "full": 0}


@dataclass
class SequenceDataset:
    name: str
    items: list[Item]  # items[i - 1] is dense item i
    user_ids: list[str]
    sequences: list[np.ndarray]  # dense item ids, oldest first
    user_features: dict[str, dict[str, str]] = field(default_factory=dict)
    min_core: int = 0  # the k-core filter it was built with, so a run can rebuild it

    @property
    def num_items(self) -> int:
        return len(self.items)

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item.id: i + 1 for i, item in enumerate(self.items)}

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {user: i for i, user in enumerate(self.user_ids)}

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

    def popularity(self) -> np.ndarray:
        """Training-split interaction counts per dense id (index 0 is padding, count 0)."""
        counts = np.zeros(self.num_items + 1, dtype=np.int64)
        for seq in self.train_sequences():
            np.add.at(counts, seq, 1)
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
    (too short for a train/valid/test split) are dropped after the k-core filter."""
    frame = k_core(raw.interactions, min_core) if min_core else raw.interactions
    lengths = frame["user_id"].map(frame["user_id"].value_counts())
    frame = frame[lengths >= min_length]
    if frame.empty:
        raise DataError(f"{raw.name}: no user has {min_length} or more interactions after filtering")

    catalogue = {item.id: item for item in raw.items}
    seen = set(frame["item_id"].unique())
    items = [item for item in raw.items if item.id in seen]
    # interactions with items the catalogue lacks still count; they get a bare record
    items += [Item(id=i, title=i) for i in sorted(seen - catalogue.keys())]
    item_index = {item.id: i + 1 for i, item in enumerate(items)}

    frame = frame.assign(dense=frame["item_id"].map(item_index))
    frame = frame.sort_values(["timestamp", "order"], kind="stable")
    user_order = pd.unique(raw.interactions["user_id"])
    groups = frame.groupby("user_id", sort=False)["dense"]
    by_user = {user: values.to_numpy(dtype=np.int64) for user, values in groups}
    user_ids = [str(u) for u in user_order if u in by_user]
    return SequenceDataset(
        name=raw.name,
        items=items,
        user_ids=user_ids,
        sequences=[by_user[u] for u in user_ids],
        user_features={u: f for u, f in raw.user_features.items() if u in by_user},
        min_core=min_core,
    )
