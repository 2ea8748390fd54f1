"""Ids looked up through the sorted array a large catalogue's prepared data keeps answer as a
dictionary would, and a run's prepared data carries them past DICT_UP_TO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools.data import sequences
from tools.data.id_lookup import IdLookup
from tools.data.prepared import load_prepared, save_prepared
from tools.data.schema import Item
from tools.data.sequences import SequenceDataset


def test_a_lookup_answers_as_a_dictionary(tmp_path: Path) -> None:
    ids = ["b7", "a", "zz", "a1", "c"]
    lookup = IdLookup.of(ids, start=1)
    assert dict(lookup.items()) == {i: n + 1 for n, i in enumerate(ids)} and len(lookup) == 5
    assert "a" in lookup and "a2" not in lookup and "zzz" not in lookup and 3 not in lookup
    assert lookup.get("missing") is None
    with pytest.raises(KeyError):
        lookup["b"]
    lookup.save(tmp_path, "items")
    loaded = IdLookup.load(tmp_path, "items", start=1)
    assert loaded is not None and loaded["c"] == 5 and IdLookup.load(tmp_path, "users", 0) is None


def test_prepared_data_keeps_the_lookups_of_a_large_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sequences, "DICT_UP_TO", 2)
    items = [Item(id=f"i{n}", title=f"T{n}") for n in range(4)]
    data = SequenceDataset(name="t", items=items, user_ids=["u2", "u1", "u3"], sequences=[np.array([1, 2, 3])] * 3)
    assert isinstance(data.item_index, IdLookup) and data.item_index["i3"] == 4 and data.user_index["u1"] == 1
    save_prepared(tmp_path / "data", data)
    back = load_prepared(tmp_path / "data")
    assert set(back.lookups) == {"items", "users"} and back.item_index["i2"] == 3 and back.user_index["u3"] == 2
