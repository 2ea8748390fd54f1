"""The catalogue in columns reads exactly as the records it was made from: each record made on
demand, and the whole-column answers (ids, years, attribute members) equal to a loop over them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tools.data.item_table import ItemTable
from tools.data.schema import Item
from tools.data.sequences import Ragged, SequenceDataset
from tools.models.attributes import available_attributes, item_values

RECORDS = [
    Item(id="a", title="Alpha", year=1994, attributes={"genre": ("Comedy", "Drama"), "price": ("$",)}),
    Item(id="b", title="Beta", attributes={"genre": ()}, description="no year, a genre field with no value"),
    Item(id="c", title="Gamma", year=2003, attributes={"price": ("$$",)}),
    Item(id="d", title="Delta", year=1999, attributes={"genre": ("Drama",)}),
]


def loop_members(items: list[Item], attribute: str) -> dict[str, list[int]]:
    members: dict[str, list[int]] = {}
    for row, item in enumerate(items):
        for value in item_values(item, attribute):
            members.setdefault(value, []).append(row)
    return dict(sorted(members.items()))


def test_records_made_on_demand_equal_the_originals(tmp_path: Path) -> None:
    pq.write_table(ItemTable.from_items(RECORDS).table, tmp_path / "items.parquet")
    table = ItemTable(pq.read_table(tmp_path / "items.parquet"), ["genre", "price"])
    assert list(table) == RECORDS and table[-1] == RECORDS[-1] and table[1:3] == RECORDS[1:3]
    assert table[0] is table[0]  # made once, then kept
    with pytest.raises(IndexError):
        table[len(RECORDS)]
    assert table.ids == ["a", "b", "c", "d"] and table.years().tolist() == [1994, -1, 2003, 1999]
    assert table.has_descriptions and not ItemTable.from_items(RECORDS[:1]).has_descriptions


def test_attribute_members_equal_a_loop_over_the_records(ml100k: SequenceDataset) -> None:
    for items in (RECORDS, list(ml100k.items)[:400]):
        table = ItemTable.from_items(items)
        assert sorted(table.present_attributes()) + ["year"] == available_attributes(items)
        for attribute in table.present_attributes():
            members = table.members(attribute)
            assert list(members) == list(loop_members(items, attribute))
            assert all(members[v].tolist() == rows for v, rows in loop_members(items, attribute).items())


def test_members_kept_with_prepared_data_read_back_equal(tmp_path: Path, ml100k: SequenceDataset) -> None:
    for items in (RECORDS, list(ml100k.items)[:400], [Item(id="x", title="X")]):
        computed = ItemTable.from_items(items)
        computed.save_members(tmp_path)
        saved = ItemTable(computed.table, computed.attributes, saved=tmp_path)
        for attribute in computed.attributes:
            kept, fresh = saved.members(attribute), computed.members(attribute)
            assert list(kept) == list(fresh) and all(kept[v].tolist() == fresh[v].tolist() for v in fresh)


def test_ragged_rows_are_views_of_one_array() -> None:
    rows = Ragged.of([np.array([1, 2]), np.array([], dtype=np.int64), np.array([3])], np.int64)
    assert len(rows) == 3 and rows[0].tolist() == [1, 2] and rows[-1].tolist() == [3] and len(rows[1]) == 0
    assert [r.tolist() for r in rows] == [[1, 2], [], [3]] and rows.lengths().tolist() == [2, 0, 1]
    assert np.shares_memory(rows[0], rows.flat)
