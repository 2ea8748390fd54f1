"""Shared fixtures. Real MovieLens-100K is fetched once (through the registry route, as on a
machine without internet) into a cache folder that every test session reuses:
TOOLREC_DATA_DIR when set, else <repo>/data."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from tools.data.fetch import fetch_dataset
from tools.data.loaders import load_directory
from tools.data.schema import RawDataset
from tools.data.sequences import SequenceDataset, build_sequences

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(__file__).resolve().parent / "fixtures" / "datasets"
INVENTED = ".invented"
_laid_out: dict[str, Path] = {}


def fixture_dataset(name: str) -> Path:
    """The fixture folder `name` under tests/fixtures/datasets. The GroupLens and RecBole fixtures are
    invented records, but their files are stored as NAME.invented so that the repository holds
    no file under MovieLens's own names; they are copied once per session under those names."""
    folder = DATASETS / name
    if not any(path.name.endswith(INVENTED) for path in folder.iterdir()):
        return folder
    if name not in _laid_out:
        root = Path(tempfile.mkdtemp(prefix="toolrec-fixtures-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        (root / name).mkdir()
        for path in folder.iterdir():
            shutil.copyfile(path, root / name / path.name.removesuffix(INVENTED))
        _laid_out[name] = root / name
    return _laid_out[name]


def pytest_configure(config: pytest.Config) -> None:
    # One torch thread: on a 2-core machine shared with the embedded LLM, OpenMP's spinning
    # threads slowed training steps tenfold; one thread keeps the suite fast and deterministic.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return Path(os.environ.get("TOOLREC_DATA_DIR", REPO / "data")).resolve()


@pytest.fixture(scope="session")
def ml100k_raw(data_dir: Path) -> RawDataset:
    # offline: skip the GroupLens attempt, tests must not depend on the internet
    return load_directory(fetch_dataset("ml-100k", data_dir, offline=True))


@pytest.fixture(scope="session")
def ml100k(ml100k_raw: RawDataset) -> SequenceDataset:
    return build_sequences(ml100k_raw)


def only_validation_reads(monkeypatch: pytest.MonkeyPatch, who: str) -> list[str]:
    """Make reading a test target, or a history that holds the validation item, fail the test
    (for fits that must see validation users only); returns the splits of the targets read."""
    read: list[str] = []
    target, history = SequenceDataset.target, SequenceDataset.history

    def no_test_target(self: SequenceDataset, user_id: str, split: str = "test") -> int:
        read.append(split)
        if split != "valid":
            raise AssertionError(f"the {who} read a test target")
        return target(self, user_id, split)  # type: ignore[arg-type]

    def no_test_history(self: SequenceDataset, user_id: str, split: str = "test"):  # noqa: ANN202
        if split != "valid":
            raise AssertionError(f"the {who} read a {split} history, which holds the validation item")
        return history(self, user_id, split)  # type: ignore[arg-type]

    monkeypatch.setattr(SequenceDataset, "target", no_test_target)
    monkeypatch.setattr(SequenceDataset, "history", no_test_history)
    return read
