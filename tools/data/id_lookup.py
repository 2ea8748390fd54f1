"""Source ids to dense rows through one sorted array: a binary search per id instead of a
dictionary, whose million entries took a third of a second to build each time a run was
opened. The sorted array is kept with a run's prepared data and memory-mapped, so opening costs
nothing and lookups start at once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np


class IdLookup(Mapping[str, int]):
    """`lookup[source_id]` is the id's position in `ids` plus `start` (1 for items: dense ids
    start at 1, 0 for users)."""

    def __init__(self, ordered: np.ndarray, order: np.ndarray, start: int) -> None:
        self.ordered, self.order, self.start = ordered, order, start  # ids sorted; their positions

    @classmethod
    def of(cls, ids: Sequence[str], start: int) -> IdLookup:
        values = np.asarray(ids, dtype=str) if len(ids) else np.empty(0, dtype="U1")
        order = np.argsort(values, kind="stable")
        return cls(values[order], order, start)

    def save(self, folder: Path, name: str) -> None:
        np.save(folder / f"{name}_ordered.npy", self.ordered)
        np.save(folder / f"{name}_order.npy", self.order)

    @classmethod
    def load(cls, folder: Path, name: str, start: int) -> IdLookup | None:
        paths = folder / f"{name}_ordered.npy", folder / f"{name}_order.npy"
        if not all(path.exists() for path in paths):
            return None
        return cls(np.load(paths[0], mmap_mode="r"), np.load(paths[1], mmap_mode="r"), start)

    def __getitem__(self, key: str) -> int:
        if isinstance(key, str) and len(self.ordered):
            at = int(np.searchsorted(self.ordered, key))
            if at < len(self.ordered) and self.ordered[at] == key:
                return int(self.order[at]) + self.start
        raise KeyError(key)

    def __len__(self) -> int:
        return len(self.ordered)

    def __iter__(self) -> Iterator[str]:
        return (str(value) for value in self.ordered)
