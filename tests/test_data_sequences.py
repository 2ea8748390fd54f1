"""k-core filtering, time order with file-order tie-breaks, and the leave-one-out split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import fixture_dataset

from tools.data.loaders import load_grouplens, load_recbole
from tools.data.schema import DataError, Item, RawDataset, interactions_frame
from tools.data.sequences import build_sequences, k_core


def pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["item_id"], strict=True))


def test_k_core_cascades() -> None:
    # dropping b (1 rating) and i3 (1 rating) leaves a and c with too few in turn
    frame = interactions_frame([("a", "i1", 1, 1), ("a", "i2", 1, 2), ("b", "i1", 1, 3), ("c", "i2", 1, 4), ("c", "i3", 1, 5)])
    assert k_core(frame, 2).empty


def test_k_core_keeps_a_dense_block() -> None:
    block = [(u, i, 1, t) for t, (u, i) in enumerate([(u, i) for u in "ab" for i in ("x", "y")])]
    frame = interactions_frame([*block, ("c", "x", 1, 9), ("a", "z", 1, 10)])
    kept = k_core(frame, 2)
    assert pairs(kept) == {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")}
    assert kept["user_id"].value_counts().min() >= 2 and kept["item_id"].value_counts().min() >= 2
    assert k_core(frame, 0).equals(frame) and k_core(frame, 1).equals(frame)


def test_ties_keep_file_order() -> None:
    data = build_sequences(load_grouplens(fixture_dataset("grouplens-100k")))
    assert data.user_ids == ["412", "95", "33"]  # order of first appearance
    assert [item.id for item in data.items] == ["1", "2", "3", "4", "5", "267"]
    # 412 rated 1, 3 and 5 at the same second, after 4: the file's order breaks the tie
    ids = {user: [data.item(int(d)).id for d in seq] for user, seq in zip(data.user_ids, data.sequences, strict=True)}
    assert ids == {"412": ["4", "1", "3", "5"], "95": ["1", "2", "4", "267"], "33": ["1", "5", "2"]}


def test_ties_are_stable_when_the_file_is_reordered() -> None:
    raw = load_recbole(fixture_dataset("recbole-1m"))
    data = build_sequences(raw, min_length=1)
    first = [data.item(int(d)).id for d in data.sequences[data.user_index["1m_1"]]]
    assert first == ["Marmalade Lighthouse (1995)", "Xenomorph³ (1992)", "Gumboot Jamboree (1995)"]
    # the same rows reversed: the tie now resolves the other way, as the file says
    frame = raw.interactions.iloc[::-1]
    flipped = interactions_frame(zip(frame["user_id"], frame["item_id"], frame["rating"], frame["timestamp"], strict=True))
    data = build_sequences(raw.model_copy(update={"interactions": flipped}), min_length=1)
    assert [data.item(int(d)).id for d in data.sequences[data.user_index["1m_1"]]][:2] == [
        "Xenomorph³ (1992)",
        "Marmalade Lighthouse (1995)",
    ]


def test_leave_one_out_split() -> None:
    data = build_sequences(load_grouplens(fixture_dataset("grouplens-100k")))
    d = data.item_index
    seq_412 = [d["4"], d["1"], d["3"], d["5"]]
    inputs, targets = data.split("test")
    assert inputs[0].tolist() == seq_412[:-1] and targets[0] == seq_412[-1]
    inputs, targets = data.split("valid")
    assert inputs[0].tolist() == seq_412[:-2] and targets[0] == seq_412[-2]
    assert data.train_sequences()[0].tolist() == seq_412[:-2]
    assert data.history("412", "test").tolist() == seq_412[:-1]
    assert data.history("412", "valid").tolist() == seq_412[:-2]
    assert targets.dtype == np.int64 and len(targets) == len(data.user_ids) == 3
    # the held-out items never reach the training counts
    popularity = data.popularity()
    assert popularity[0] == 0 and popularity.sum() == sum(len(s) - 2 for s in data.sequences)
    with pytest.raises(KeyError, match="unknown user"):
        data.history("nobody")


def test_min_length_and_bare_items() -> None:
    frame = interactions_frame([("a", "x", 1, 1), ("a", "y", 1, 2), ("a", "new", 1, 3), ("b", "x", 1, 4)])
    raw = RawDataset(
        name="t",
        items=[Item(id="x", title="X"), Item(id="y", title="Y"), Item(id="z", title="unrated")],
        interactions=frame,
    )
    data = build_sequences(raw)
    assert data.user_ids == ["a"]  # b is too short to split
    assert [item.id for item in data.items] == ["x", "y", "new"]  # rated items only; unknown ids get a record
    assert data.items[-1] == Item(id="new", title="new")
    with pytest.raises(DataError, match="no user has 5 or more"):
        build_sequences(raw, min_length=5)
