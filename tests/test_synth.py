"""`toolrec data synth`: the same data for a seed, the promised shape and columns, Zipf-like
popularity, attributes that follow the sequences, and structure a SASRec learns beyond what
popularity and the counted transitions read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from eval.backbone import evaluate_backbone
from eval.cli import app
from eval.training import TrainSpec, train_run
from tools.data import synth
from tools.data.loaders import load_directory
from tools.data.sequences import build_sequences
from tools.data.synth import INTERACTIONS, ITEMS, MANIFEST, PRICES, SynthManifest, SynthSpec, synthesize
from tools.models.base import Counted
from tools.models.checkpoint import build_model, new_config

SMALL = SynthSpec(items=300, users=200, interactions=6_000, seed=7)


def _frames(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(directory / ITEMS), pd.read_parquet(directory / INTERACTIONS)


def test_a_seed_gives_the_same_data_and_another_seed_other_data(tmp_path: Path) -> None:
    synthesize(SMALL, tmp_path / "a")
    synthesize(SMALL, tmp_path / "b")
    synthesize(SMALL.model_copy(update={"seed": 8}), tmp_path / "c")
    for name in (ITEMS, INTERACTIONS):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for first, second in zip(_frames(tmp_path / "a"), _frames(tmp_path / "b"), strict=True):
        pd.testing.assert_frame_equal(first, second)
    items, interactions = _frames(tmp_path / "a")
    other_items, other_interactions = _frames(tmp_path / "c")
    assert not items["title"].equals(other_items["title"])
    assert not interactions["item_id"].equals(other_interactions["item_id"])


def test_the_format_counts_and_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "CHUNK_ROWS", 1_000)  # several chunks, each its own row group
    manifest = synthesize(SMALL, tmp_path)
    assert SynthManifest.model_validate_json((tmp_path / MANIFEST).read_text()) == manifest
    assert manifest.interactions == SMALL.interactions and manifest.files[INTERACTIONS] == (tmp_path / INTERACTIONS).stat().st_size
    items, interactions = _frames(tmp_path)

    assert list(items.columns) == ["item_id", "title", "year", "description", "category", "price", "city"]
    assert len(items) == SMALL.items and items["item_id"].is_unique and items["title"].is_unique
    assert items["year"].dtype == np.int64 and items["year"].between(1950, 2025).all()
    categories = items["category"].str.split("|")
    assert categories.map(len).between(1, 3).all() and categories.map(lambda c: len(set(c)) == len(c)).all()
    assert categories.explode().nunique() <= manifest.categories
    assert set(items["price"]) <= set(PRICES) and items["city"].nunique() <= manifest.cities
    first = items.iloc[0]
    assert first["description"].endswith(f"item from {first['year']} in {first['city']}")
    assert first["category"].split("|")[-1] in first["description"]

    assert list(interactions.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert str(interactions["timestamp"].dtype) == "int64" and interactions["rating"].between(1, 5).all()
    assert len(interactions) == SMALL.interactions and interactions["user_id"].nunique() == SMALL.users
    assert set(interactions["item_id"]) <= set(items["item_id"])
    assert not interactions.duplicated(["user_id", "item_id"]).any()  # a held-out repeat would be masked
    assert (interactions.groupby("user_id", sort=False)["timestamp"].diff().dropna() > 0).all()
    lengths = interactions["user_id"].value_counts()
    assert lengths.min() >= synth.MIN_LENGTH and lengths.max() <= SMALL.items // 4
    assert lengths.std() > 0.5 * lengths.mean()  # lengths vary


def test_popularity_is_zipf_like_and_attributes_follow_the_sequences(tmp_path: Path) -> None:
    synthesize(SynthSpec(items=20_000, users=5_000, interactions=200_000, seed=1), tmp_path)
    items, interactions = _frames(tmp_path)
    counts = interactions["item_id"].value_counts()
    assert counts.iloc[:200].sum() > 0.15 * len(interactions)  # the top 1% of items: 15 times a uniform share
    # a user's consecutive items share a category far more often than two items at random
    category = items.set_index("item_id")["category"].str.split("|").map(set)
    sets = category.loc[interactions["item_id"]].to_numpy()
    same_user = interactions["user_id"].to_numpy()[1:] == interactions["user_id"].to_numpy()[:-1]
    consecutive = np.mean([bool(a & b) for a, b in zip(sets[:-1][same_user], sets[1:][same_user], strict=True)])
    shuffled = np.random.default_rng(0).permutation(sets)
    at_random = np.mean([bool(a & b) for a, b in zip(sets[:-1], shuffled[1:], strict=True)])
    assert consecutive > 3 * at_random, (consecutive, at_random)


def test_a_trained_sasrec_beats_popularity_and_transitions(tmp_path: Path) -> None:
    synthesize(SynthSpec(items=2_000, users=1_500, interactions=60_000, seed=0), tmp_path / "synth")
    data = build_sequences(load_directory(tmp_path / "synth"))
    baselines = {}
    for kind in ("popularity", "transitions"):
        model = build_model(new_config(kind, data), data)
        assert isinstance(model, Counted)
        model.fit(data)
        baselines[kind] = {split: evaluate_backbone(model, data, split, ks=(10,))["ndcg@10"] for split in ("valid", "test")}
    # SASRec is at its plateau on this shape by the fifth epoch
    metrics = train_run(TrainSpec(dataset="synth", max_len=50, epochs=6, threads=1), tmp_path / "run", tmp_path, data=data)
    sasrec = {"valid": metrics["valid"]["ndcg@10"], "test": metrics["test_ndcg10"]}
    for split in ("valid", "test"):
        assert sasrec[split] > 1.1 * baselines["transitions"][split] > 2 * baselines["popularity"][split], (sasrec, baselines)


def test_the_command_writes_the_catalogue_and_refuses_impossible_shapes(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path), "--items", "100", "--users", "20", "--interactions", "300"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / MANIFEST).read_text())
    assert recorded["spec"] == {"items": 100, "users": 20, "interactions": 300, "seed": 0}
    assert len(pd.read_parquet(tmp_path / INTERACTIONS)) == 300

    too_many = runner.invoke(
        app, ["data", "synth", "--out", str(tmp_path / "x"), "--items", "40", "--users", "10", "--interactions", "200"]
    )
    assert too_many.exit_code == 1 and "a quarter of 40 items" in too_many.output
    assert not (tmp_path / "x" / MANIFEST).exists()
    unknown = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), "--shape", "10k"])
    assert unknown.exit_code == 2 and "100k, 1m" in unknown.output
    partial = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), "--items", "100"])
    assert partial.exit_code == 2 and "--interactions" in partial.output
