"""The own-catalogue format: the same small catalogue in CSV, JSON lines and Parquet reads
alike, bad rows are named by file and line, and a run opens from its prepared data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eval.training import TrainSpec, train_run
from tools.data import loaders
from tools.data.loaders import load_directory
from tools.data.prepared import load_prepared, save_prepared
from tools.data.schema import DataError, Item
from tools.data.sequences import build_sequences
from tools.models.checkpoint import PREPARED, load_run
from tools.registry import call_tool
from tools.toolbox import Toolbox

ITEMS = [
    {
        "item_id": "b1",
        "title": "The Glass Harbour",
        "year": 2011,
        "description": "A quiet mystery by the sea.",
        "category": "Mystery|Crime",
        "price": "$$",
    },
    {"item_id": "b2", "title": "Orbit of Ashes", "year": 2019, "description": "", "category": "Sci-Fi", "price": "$"},
    {"item_id": "b3", "title": "Small Gardens", "year": None, "description": "Essays on growing things.", "category": "", "price": "$"},
]
INTERACTIONS = [
    {"user_id": "u1", "item_id": "b1", "timestamp": 100, "rating": 5.0},
    {"user_id": "u2", "item_id": "b2", "timestamp": 90, "rating": 3.0},
    {"user_id": "u1", "item_id": "b3", "timestamp": 50, "rating": 4.0},
    {"user_id": "u1", "item_id": "b2", "timestamp": 200, "rating": 2.0},
    {"user_id": "u2", "item_id": "b1", "timestamp": 95, "rating": 4.5},
    {"user_id": "u2", "item_id": "b3", "timestamp": 99, "rating": 1.0},
]


def write(directory: Path, suffix: str, items: list[dict], interactions: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, records in (("items", items), ("interactions", interactions)):
        frame = pd.DataFrame(records)
        path = directory / f"{stem}{suffix}"
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        elif suffix == ".jsonl":
            path.write_text("".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n" for r in records))
        else:
            frame.to_parquet(path)
    return directory


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_catalogue(tmp_path: Path, suffix: str) -> None:
    raw = load_directory(write(tmp_path / "shop", suffix, ITEMS, INTERACTIONS))
    assert raw.name == "shop"
    items = {item.id: item for item in raw.items}
    assert items["b1"] == Item(
        id="b1",
        title="The Glass Harbour",
        year=2011,
        description="A quiet mystery by the sea.",
        attributes={"category": ("Mystery", "Crime"), "price": ("$$",)},
    )
    assert (items["b2"].description, items["b3"].year, items["b3"].attributes["category"]) == (None, None, ())
    dataset = build_sequences(raw)
    assert dataset.user_ids == ["u1", "u2"]
    assert [dataset.item(int(d)).id for d in dataset.sequences[0]] == ["b3", "b1", "b2"]  # by time
    assert dataset.user_ratings("u1") == {"b3": 4.0, "b1": 5.0, "b2": 2.0}


def test_interactions_without_ratings_and_with_dates(tmp_path: Path) -> None:
    dated = [{"user_id": r["user_id"], "item_id": r["item_id"], "timestamp": f"2020-01-01T00:0{i}:00Z"} for i, r in enumerate(INTERACTIONS)]
    dataset = build_sequences(load_directory(write(tmp_path / "shop", ".csv", ITEMS, dated)))
    assert dataset.ratings is None and dataset.user_ratings("u1") == {}
    assert [dataset.item(int(d)).id for d in dataset.sequences[0]] == ["b1", "b3", "b2"]


@pytest.mark.parametrize(
    ("suffix", "items", "interactions", "message"),
    [
        (
            ".csv",
            ITEMS,
            [*INTERACTIONS[:3], {**INTERACTIONS[3], "rating": "great"}],
            r"interactions\.csv, line 5: rating 'great' is not a number",
        ),
        (
            ".csv",
            ITEMS,
            [*INTERACTIONS[:1], {**INTERACTIONS[1], "timestamp": "yesterday"}],
            r"interactions\.csv, line 3: timestamp 'yesterday'",
        ),
        (".csv", ITEMS, [{**INTERACTIONS[0], "user_id": ""}], r"interactions\.csv, line 2: 'user_id' is missing or empty"),
        (".csv", [*ITEMS, {**ITEMS[0], "title": "Again"}], INTERACTIONS, r"items\.csv, line 5: item 'b1' again \(first at line 2\)"),
        (".csv", [{**ITEMS[0], "year": "soon"}], INTERACTIONS, r"items\.csv, line 2: year 'soon' is not a year"),
        (".parquet", ITEMS, [*INTERACTIONS[:2], {**INTERACTIONS[2], "item_id": " "}], r"interactions\.parquet, row 3: 'item_id'"),
        (".csv", [{"item_id": "b1"}], INTERACTIONS, r"items\.csv: missing column\(s\) title"),
    ],
)
def test_a_bad_row_is_named_by_file_and_line(
    tmp_path: Path, suffix: str, items: list[dict], interactions: list[dict], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        load_directory(write(tmp_path / "shop", suffix, items, interactions))


def test_bad_json_is_named_by_line(tmp_path: Path) -> None:
    folder = write(tmp_path / "shop", ".jsonl", ITEMS, INTERACTIONS)
    lines = (folder / "interactions.jsonl").read_text().splitlines()
    lines[3] = lines[3][:-1]  # a cut-off object
    (folder / "interactions.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"interactions\.jsonl, line 4: not valid JSON"):
        load_directory(folder)


def test_large_files_are_read_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk boundaries change nothing: the order, the line numbers of errors."""
    folder = write(tmp_path / "shop", ".csv", ITEMS, INTERACTIONS)
    whole = build_sequences(load_directory(folder))
    monkeypatch.setattr(loaders.catalogue, "CHUNK_ROWS", 2)
    chunked = build_sequences(load_directory(folder))
    assert whole.user_ids == chunked.user_ids and all(np.array_equal(a, b) for a, b in zip(whole.sequences, chunked.sequences, strict=True))
    write(folder, ".csv", ITEMS, [*INTERACTIONS[:4], {**INTERACTIONS[4], "rating": "x"}])
    with pytest.raises(DataError, match=r"line 6: rating 'x'"):
        load_directory(folder)


def test_two_files_of_one_kind_are_refused(tmp_path: Path) -> None:
    folder = write(tmp_path / "shop", ".csv", ITEMS, INTERACTIONS)
    write(folder, ".parquet", ITEMS, INTERACTIONS)
    with pytest.raises(DataError, match="more than one items file"):
        load_directory(folder)


def test_prepared_data_round_trips_and_is_memory_mapped(tmp_path: Path) -> None:
    dataset = build_sequences(load_directory(write(tmp_path / "shop", ".csv", ITEMS, INTERACTIONS)))
    save_prepared(tmp_path / "data", dataset)
    back = load_prepared(tmp_path / "data")
    assert list(back.items) == list(dataset.items) and back.user_ids == dataset.user_ids
    assert all(np.array_equal(a, b) for a, b in zip(back.sequences, dataset.sequences, strict=True))
    assert back.user_ratings("u2") == dataset.user_ratings("u2")
    assert not back.sequences[0].flags.writeable and not back.sequences[0].flags.owndata  # the mapped pages, read-only
    (tmp_path / "data" / "offsets.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="delete the folder"):
        load_prepared(tmp_path / "data")


def test_a_run_opens_from_its_prepared_data_without_the_raw_files(tmp_path: Path) -> None:
    folder = write(tmp_path / "shop", ".parquet", ITEMS, INTERACTIONS)
    run = tmp_path / "run"
    train_run(TrainSpec(dataset=str(folder), model="popularity"), run, tmp_path)
    assert (run / PREPARED / "meta.json").exists()
    for path in folder.iterdir():
        path.unlink()  # the raw files are gone: the run still opens
    dataset, model = load_run(run, tmp_path / "nowhere")
    assert dataset.user_ids == ["u1", "u2"] and model.config.num_items == 3


def test_prepared_data_of_another_format_is_made_again(tmp_path: Path) -> None:
    folder = write(tmp_path / "shop", ".csv", ITEMS, INTERACTIONS)
    run = tmp_path / "run"
    train_run(TrainSpec(dataset=str(folder), model="popularity"), run, tmp_path)
    meta = json.loads((run / PREPARED / "meta.json").read_text())
    (run / PREPARED / "meta.json").write_text(json.dumps({**meta, "format": 1}))
    dataset, _ = load_run(run, tmp_path)
    assert dataset.user_ids == ["u1", "u2"]
    assert json.loads((run / PREPARED / "meta.json").read_text())["format"] == meta["format"]


def test_another_model_trains_on_a_runs_prepared_data(tmp_path: Path) -> None:
    folder = write(tmp_path / "shop", ".csv", ITEMS, INTERACTIONS)
    train_run(TrainSpec(dataset=str(folder), model="popularity"), tmp_path / "first", tmp_path)
    shutil.rmtree(folder)  # no raw file is read again
    train_run(TrainSpec(dataset=str(tmp_path / "first" / PREPARED), model="popularity"), tmp_path / "second", tmp_path)
    first, second = (json.loads((tmp_path / run / "config.json").read_text()) for run in ("first", "second"))
    assert (first["dataset"], first["fingerprint"]) == (second["dataset"], second["fingerprint"]) == ("shop", first["fingerprint"])


def test_values_made_of_symbols_stay_apart(tmp_path: Path) -> None:
    """Price bands "$" and "$$" normalise to nothing: they are matched as written."""
    folder = write(tmp_path / "shop", ".csv", ITEMS, INTERACTIONS)
    train_run(TrainSpec(dataset=str(folder), model="popularity"), tmp_path / "run", tmp_path)
    toolbox = Toolbox.open(tmp_path / "run", tmp_path)
    assert toolbox.values("price", ["$$"], "attributes.price") == ["$$"]
    assert toolbox.values("price", ["$"], "attributes.price") == ["$"]
    found = call_tool(toolbox, "retrieve", {"history": ["b3"], "k": 5, "attributes": {"price": ["$$"]}})
    assert found.ok and found.output is not None and [i.id for i in found.output.items] == ["b1"]
