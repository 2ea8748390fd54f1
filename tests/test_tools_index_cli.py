"""The toolbox with its run: item indexes saved and loaded with the run (and built on demand
when missing), `Toolbox.open` from run folders, the `toolrec tool` / `toolrec index build`
commands, and the benchmark's report on ML-100K."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eval.cli import app
from tools.bench import bench_tools
from tools.data.sequences import SequenceDataset
from tools.index.item_index import ItemIndexes
from tools.registry import TOOLS, call_tool
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

QUERY = "a detective story in the snow"


def copy_run(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "id_maps.json"):
        shutil.copy(source / name, target / name)
    return target


def test_index_round_trip_through_the_run_folder(toolbox: Toolbox, tool_runs: dict[str, Path]) -> None:
    reopened = Toolbox(toolbox.dataset, toolbox.variants, run_dir=tool_runs["plain"])
    loaded = reopened.indexes  # read from RUN/index, not rebuilt
    assert loaded is not toolbox.indexes and loaded.model is not None
    assert loaded.build_stats == toolbox.indexes.build_stats
    np.testing.assert_array_equal(reopened.text_scores(QUERY), toolbox.text_scores(QUERY))
    first = call_tool(toolbox, "semantic_search", {"query": QUERY, "k": 5})
    second = call_tool(reopened, "semantic_search", {"query": QUERY, "k": 5})
    assert first.to_message() == second.to_message()
    # the stored model-space index holds the run's item embeddings
    vectors = toolbox.variants["plain"].item_vectors()[1:]
    np.testing.assert_allclose(
        loaded.model.vectors(np.arange(1, 6)), vectors[:5] / np.linalg.norm(vectors[:5], axis=1, keepdims=True), atol=1e-6
    )


def test_index_built_on_demand_with_a_message(
    toolbox: Toolbox, tmp_path: Path, embedding_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = Toolbox(toolbox.dataset, toolbox.variants, index_dir=tmp_path / "index", embedding_cache=embedding_cache)
    with caplog.at_level(logging.WARNING, logger="tools.toolbox"):
        scores = fresh.text_scores(QUERY)
    assert "no item index" in caplog.text and "toolrec index build" in caplog.text
    assert (tmp_path / "index" / "manifest.json").is_file()
    np.testing.assert_allclose(scores, toolbox.text_scores(QUERY), atol=1e-6)
    assert ItemIndexes.load(tmp_path / "index", toolbox.dataset).text.count == toolbox.num_items


def test_open_from_run_folders(tool_runs: dict[str, Path], data_dir: Path, ml100k: SequenceDataset) -> None:
    opened = Toolbox.open(tool_runs["plain"], data_dir, variants=[tool_runs["genre"]], threads=None)
    assert list(opened.variants) == ["plain", "genre"] and opened.default_variant == "plain"
    assert opened.num_items == ml100k.num_items and opened.dataset.ratings is not None
    assert opened.primary_attribute == "genre" and opened.year_span is not None
    assert opened.describe()["attributes"]["genre"]["Sci-Fi"] > 0
    history = opened.user_history("196")
    assert len(history) == len(ml100k.sequences[ml100k.user_index["196"]]) - 1
    full = Toolbox.open(tool_runs["genre"], data_dir, variants={"sequence": tool_runs["plain"]}, split="full", threads=None)
    assert list(full.variants) == ["genre", "sequence"]
    assert len(full.user_history("196")) == len(history) + 1
    with pytest.raises(ValueError, match="two variants"):
        Toolbox.open(tool_runs["plain"], data_dir, variants=[tool_runs["plain"]], threads=None)


def test_tool_command(tool_runs: dict[str, Path], data_dir: Path) -> None:
    runner = CliRunner()
    common = ["--run", str(tool_runs["plain"]), "--data-dir", str(data_dir), "--variant", f"genre={tool_runs['genre']}"]
    result = runner.invoke(
        app, ["tool", "retrieve", *common, "--args", '{"user_id": "196", "k": 3, "variant": "genre", "genres": ["Comedy"]}']
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] and len(payload["output"]["items"]) == 3
    assert all("Comedy" in item["attributes"]["genre"] for item in payload["output"]["items"])
    failed = runner.invoke(app, ["tool", "retrieve", *common, "--args", '{"user_id": "196", "genres": ["Space"]}'])
    assert failed.exit_code == 1 and json.loads(failed.stdout)["error"]["code"] == "unknown_value"
    unknown = runner.invoke(app, ["tool", "teleport"])
    assert unknown.exit_code == 1 and json.loads(unknown.stdout)["error"]["code"] == "unknown_tool"
    listed = runner.invoke(app, ["tool", "list"])
    assert listed.exit_code == 0 and [t["function"]["name"] for t in json.loads(listed.stdout)] == list(TOOLS)


def test_index_build_command(tool_runs: dict[str, Path], data_dir: Path, embedding_cache: Path, tmp_path: Path) -> None:
    run = copy_run(tool_runs["plain"], tmp_path / "run")
    result = CliRunner().invoke(
        app, ["index", "build", "--run", str(run), "--kind", "hnsw", "--data-dir", str(data_dir), "--embedding-cache", str(embedding_cache)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "hnsw" and report["has_model_index"] and report["total_s"] >= 0 and report["peak_rss_mib"] > 0
    opened = Toolbox.open(run, data_dir, threads=None)
    assert opened.indexes.text.config.kind == "hnsw"
    assert opened.indexes.manifest.build_stats["items"] == opened.num_items


def test_bench_report(toolbox: Toolbox, tool_runs: dict[str, Path]) -> None:
    report = bench_tools(toolbox, tool_runs["plain"], calls=30, with_data_reload=False)
    for key in (
        "retrieve_p50_ms",
        "retrieve_p99_ms",
        "constrained_retrieve_p50_ms",
        "semantic_search_p50_ms",
        "similar_items_p99_ms",
        "rank_100_p99_ms",
        "item_info_p99_ms",
        "user_profile_p99_ms",
        "lookup_p99_ms",
        "top_items_p50_ms",
        "checkpoint_load_ms",
        "users_per_second",
    ):
        assert report[key] > 0, key
    assert report["retrieve_p50_ms"] <= report["retrieve_p99_ms"]
    assert report["index_build_s"] >= 0 and report["variants"] == ["plain", "genre"]
    json.dumps(report)


def test_stale_model_index_warns(toolbox: Toolbox, tool_runs: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    # the genre variant's weights against the plain run's stored index: same catalogue, other weights
    other = Toolbox(toolbox.dataset, {"genre": toolbox.variants["genre"]}, index_dir=tool_runs["plain"] / "index")
    with caplog.at_level(logging.WARNING, logger="tools.toolbox"):
        other.warm()
    assert "other weights" in caplog.text
    assert set(other._spaces) == {"genre"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tools.toolbox"):
        Toolbox(toolbox.dataset, toolbox.variants, run_dir=tool_runs["plain"]).warm()
    assert "other weights" not in caplog.text


def test_recommend_command_streams_the_steps_and_prints_json(
    tool_runs: dict[str, Path], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLREC_DATA_DIR", str(data_dir))
    common = [
        "recommend",
        "--run",
        str(tool_runs["plain"]),
        "--variant",
        f"genre={tool_runs['genre']}",
        "--user",
        "196",
        "--k",
        "5",
        "--llm",
        "none",
    ]
    shown = CliRunner().invoke(app, common)
    assert shown.exit_code == 0, shown.output
    assert "seed tool retrieve" in shown.stdout and "validate 5 items" in shown.stdout
    printed = CliRunner().invoke(app, [*common, "--json"])
    assert printed.exit_code == 0, printed.output
    rec = json.loads(printed.stdout)
    assert len(rec["items"]) == 5 and rec["rounds"] == 0 and all(i["reason"] and i["via"] for i in rec["items"])
