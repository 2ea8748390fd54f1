"""The catalogue in columns, its `Item` records made when one is asked for.

A million pydantic records take about fifteen seconds to build and gigabytes to hold, while a
recommendation reads a few dozen of them. So a dataset's items are an `ItemTable`: an Arrow table
(`item_id`, `title`, `year`, `description`, and one `attribute:KIND` column per attribute type,
its values joined by JOIN) that is read as a sequence of `Item`s, each made on first access and
kept. What the tools need of every item (ids, years, which items carry each attribute value) is
computed from the columns at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tools.data.rows import Rows
from tools.data.schema import Item

# joins an item's values of one attribute: a million lists read back from Parquet took seconds,
# a million strings a fraction of one (the unit separator never occurs in a value)
JOIN = "\x1f"
ATTRIBUTE_PREFIX = "attribute:"


class ItemTable(Rows[Item]):
    """`table[i]` is the catalogue's i-th item (dense id i + 1); `attributes` the attribute
    types in column order."""

    def __init__(self, table: pa.Table, attributes: list[str], records: list[Item] | None = None, saved: Path | None = None) -> None:
        """`saved`: a folder where `save_members` kept the attribute members, read instead of
        computed (a run's prepared data)."""
        self.table = table
        self.attributes = attributes
        self._records: list[Item | None] = list(records) if records is not None else [None] * table.num_rows
        self._saved = saved

    @classmethod
    def from_items(cls, items: Sequence[Item]) -> ItemTable:
        if isinstance(items, ItemTable):
            return items
        attributes = list(dict.fromkeys(kind for item in items for kind in item.attributes))
        columns: dict[str, pa.Array] = {
            "item_id": pa.array([i.id for i in items], pa.string()),
            "title": pa.array([i.title for i in items], pa.string()),
            "year": pa.array([i.year for i in items], pa.int32()),
            "description": pa.array([i.description for i in items], pa.string()),
        }
        for kind in attributes:
            # null where an item lacks the attribute type, the joined values (maybe none) where it has it
            values = [i.attributes.get(kind) for i in items]
            columns[ATTRIBUTE_PREFIX + kind] = pa.array([None if v is None else JOIN.join(v) for v in values], pa.string())
        return cls(pa.table(columns), attributes, records=list(items))

    # --- the sequence of records ------------------------------------------------------------

    def __len__(self) -> int:
        return self.table.num_rows

    def _at(self, row: int) -> Item:
        record = self._records[row]
        if record is None:
            record = self._records[row] = self._record(row)
        return record

    def _record(self, row: int) -> Item:
        attributes: dict[str, tuple[str, ...]] = {}
        for kind in self.attributes:
            joined = self.table.column(ATTRIBUTE_PREFIX + kind)[row].as_py()
            if joined is not None:
                attributes[kind] = tuple(joined.split(JOIN)) if joined else ()
        # validated when the raw files were read
        return Item.model_construct(
            id=self.ids[row],
            title=self.table.column("title")[row].as_py(),
            year=self.table.column("year")[row].as_py(),
            description=self.table.column("description")[row].as_py(),
            attributes=attributes,
        )

    # --- whole columns ----------------------------------------------------------------------

    @cached_property
    def ids(self) -> list[str]:
        ids: list[str] = self.table.column("item_id").to_pylist()
        return ids

    def years(self) -> np.ndarray:
        """Each item's year, -1 where unknown."""
        years: np.ndarray = self.table.column("year").fill_null(-1).to_numpy().astype(np.int64)
        return years

    @cached_property
    def has_descriptions(self) -> bool:
        """Whether any item has a description (asked by each conversation's reader)."""
        longest = pc.max(pc.utf8_length(self.table.column("description"))).as_py()
        return bool(longest)

    def present_attributes(self) -> list[str]:
        """Attribute types at least one item carries."""
        return [kind for kind in self.attributes if self.table.column(ATTRIBUTE_PREFIX + kind).null_count < len(self)]

    def members(self, attribute: str) -> dict[str, np.ndarray]:
        """value -> the rows (0-based, ascending) of the items having it, values sorted."""
        path = None if self._saved is None else self._saved / _members_file(self.attributes.index(attribute))
        if path is not None and path.exists():
            with np.load(path) as saved:
                values, rows, ends = saved["values"].tolist(), saved["rows"], saved["ends"]
            return dict(zip(values, np.split(rows, ends[:-1]), strict=True)) if values else {}
        column = self.table.column(ATTRIBUTE_PREFIX + attribute).combine_chunks()
        filled = pc.and_(pc.is_valid(column), pc.not_equal(column, ""))
        rows = np.flatnonzero(filled.fill_null(False).to_numpy(zero_copy_only=False))
        lists = pc.split_pattern(column.filter(filled), JOIN)
        parents = rows[pc.list_parent_indices(lists).to_numpy()]
        encoded = pc.list_flatten(lists).dictionary_encode()
        values, codes = encoded.dictionary.to_pylist(), encoded.indices.to_numpy()
        order = np.argsort(codes, kind="stable")  # rows stay ascending within a value
        groups = np.split(parents[order], np.cumsum(np.bincount(codes, minlength=len(values)))[:-1])
        return {value: groups[code].astype(np.int64) for code, value in sorted(enumerate(values), key=lambda pair: pair[1])}

    def save_members(self, folder: Path) -> None:
        """Keep every attribute's members in `folder` (at a million items they took half a
        second to compute at each start)."""
        for position, kind in enumerate(self.attributes):
            members = self.members(kind)
            rows = np.concatenate(list(members.values())) if members else np.empty(0, dtype=np.int64)
            ends = np.cumsum([len(r) for r in members.values()], dtype=np.int64)
            np.savez(folder / _members_file(position), values=np.array(list(members), dtype=str), rows=rows, ends=ends)


def _members_file(position: int) -> str:
    return f"members-{position}.npz"  # by position: an attribute's name may not suit a file name
