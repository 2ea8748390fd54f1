"""The real MovieLens-100K, fetched through the registry route by the session fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools.data.fetch import read_manifest
from tools.data.loaders import load_directory
from tools.data.loaders.movielens import GENRES_100K
from tools.data.schema import RawDataset
from tools.data.sequences import SequenceDataset


def test_published_counts(ml100k_raw: RawDataset, data_dir: Path) -> None:
    frame = ml100k_raw.interactions
    assert (frame["user_id"].nunique(), frame["item_id"].nunique(), len(frame)) == (943, 1682, 100_000)
    assert len(ml100k_raw.items) == 1682 and len(ml100k_raw.user_features) == 943
    manifest = read_manifest(data_dir / "ml-100k")
    assert (manifest.counts.users, manifest.counts.ratings) == (943, 100_000)
    assert set(frame["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # ratings were collected from September 1997 to April 1998
    assert frame["timestamp"].min() > 874_700_000 and frame["timestamp"].max() < 893_300_000


def test_catalogue(ml100k_raw: RawDataset) -> None:
    items = {item.id: item for item in ml100k_raw.items}
    toy_story = items["1"]
    assert (toy_story.title, toy_story.year, toy_story.attributes) == (
        "Toy Story",
        1995,
        {"genre": ("Animation", "Children's", "Comedy")},
    )
    assert items["89"].attributes["genre"] == ("Film-Noir", "Sci-Fi")  # Blade Runner
    assert items["543"].title == "Misérables, Les"
    genres = {g for item in ml100k_raw.items for g in item.attributes["genre"]}
    assert genres == set(GENRES_100K)
    assert all(item.year is not None for item in ml100k_raw.items if item.id != "267")
    assert not any(item.title.endswith(")") and item.title[-5:-1].isdigit() for item in ml100k_raw.items)
    assert ml100k_raw.user_features["1"] == {"age": "24", "gender": "M", "occupation": "technician", "zip": "85711"}


def test_sequences(ml100k: SequenceDataset, ml100k_raw: RawDataset) -> None:
    assert (len(ml100k.user_ids), ml100k.num_items) == (943, 1682)
    assert sum(len(s) for s in ml100k.sequences) == 100_000
    assert min(len(s) for s in ml100k.sequences) >= 20  # every ML-100K user rated 20 or more
    # each sequence is in time order
    frame = ml100k_raw.interactions
    stamps = dict(zip(zip(frame["user_id"], frame["item_id"], strict=True), frame["timestamp"], strict=True))
    for user in ("1", "196", "943"):
        seq = ml100k.sequences[ml100k.user_index[user]]
        times = np.array([stamps[(user, ml100k.item(int(d)).id)] for d in seq])
        assert (np.diff(times) >= 0).all()


@pytest.mark.ml1m
def test_ml1m_if_present(data_dir: Path) -> None:
    """ML-1M is not fetched by the tests (13.5 MB); checked when `toolrec data get ml-1m` ran."""
    if not (data_dir / "ml-1m" / "toolrec-dataset.json").is_file():
        pytest.skip("ML-1M not fetched")
    raw = load_directory(data_dir / "ml-1m")
    frame = raw.interactions
    assert (frame["user_id"].nunique(), frame["item_id"].nunique(), len(frame), len(raw.items)) == (
        6040,
        3706,
        1_000_209,
        3883,
    )
    genres = {g for item in raw.items for g in item.attributes["genre"]}
    assert len(genres) == 18
