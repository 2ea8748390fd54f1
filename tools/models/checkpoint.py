"""Build a backbone from its configuration, and save and load it with the dataset it belongs to.

A checkpoint is a folder: `model.safetensors` (weights), `config.json` (model configuration and
the dataset's fingerprint) and `id_maps.json` (dense id -> source id for items and users).
Loading against another dataset is refused: dense ids would silently mean other items.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from pydantic import BaseModel
from safetensors.torch import load_file, save_file

from tools.data.fetch import load_sequences
from tools.data.prepared import is_prepared, load_prepared, save_prepared
from tools.data.schema import DataError
from tools.data.sequences import SequenceDataset
from tools.io import atomic_path, write_json
from tools.models.attributes import AttributeVocab
from tools.models.base import ModelConfig, ModelKind, Recommender
from tools.models.bert4rec import BERT4Rec
from tools.models.popularity import Popularity
from tools.models.sasrec import SASRec
from tools.models.transitions import Transitions

log = logging.getLogger(__name__)
WEIGHTS, CONFIG, ID_MAPS, PREPARED = "model.safetensors", "config.json", "id_maps.json", "data"


class CheckpointMeta(BaseModel):
    model: ModelConfig
    dataset: str
    min_core: int = 0
    fingerprint: str


def fingerprint(dataset: SequenceDataset) -> str:
    """Hash of the item id order: equal fingerprints mean dense ids name the same items."""
    digest = hashlib.sha256("\n".join(dataset.items.ids).encode())
    return digest.hexdigest()[:16]


def new_config(kind: ModelKind, dataset: SequenceDataset, attribute: str | None = None, **overrides: object) -> ModelConfig:
    if kind == "sasrec-attr" and attribute is None:
        raise ValueError("sasrec-attr needs an attribute type (e.g. genre or year)")
    values = AttributeVocab.from_items(dataset.items, attribute).values if attribute else []
    return ModelConfig(kind=kind, num_items=dataset.num_items, attribute=attribute, attribute_values=values, **overrides)


def build_model(config: ModelConfig, dataset: SequenceDataset, initialise: bool = True) -> Recommender:
    """The network `config` describes; `initialise=False` skips the random draw of the item
    table, for weights about to be loaded."""
    table = None
    if config.attribute:
        table = AttributeVocab(attribute=config.attribute, values=config.attribute_values).table(dataset.items)
    if config.kind in ("sasrec", "sasrec-attr"):
        return SASRec(config, table, initialise)
    if config.kind == "bert4rec":
        return BERT4Rec(config, table, initialise)
    if config.kind == "transitions":
        return Transitions(config)
    return Popularity(config, dataset.popularity())


def save_model(run_dir: Path, model: Recommender, dataset: SequenceDataset) -> None:
    meta = CheckpointMeta(model=model.config, dataset=dataset.name, min_core=dataset.min_core, fingerprint=fingerprint(dataset))
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    write_json(run_dir / CONFIG, meta.model_dump())
    write_json(run_dir / ID_MAPS, {"items": dataset.items.ids, "users": dataset.user_ids})


def read_meta(run_dir: Path) -> CheckpointMeta:
    path = run_dir / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint here (train one with `toolrec train`)")
    return CheckpointMeta.model_validate_json(path.read_text())


def load_model(run_dir: Path, dataset: SequenceDataset) -> Recommender:
    meta = read_meta(run_dir)
    if meta.dataset != dataset.name or meta.fingerprint != fingerprint(dataset):
        raise DataError(
            f"{run_dir} was trained on {meta.dataset} (items {meta.fingerprint}), not on {dataset.name} (items {fingerprint(dataset)})"
        )
    model = build_model(meta.model, dataset, initialise=False)
    model.load_state_dict(load_file(str(run_dir / WEIGHTS)))
    return model.eval()


def run_dataset(run_dir: Path, data_dir: Path) -> SequenceDataset:
    """The dataset a run was trained on: its prepared data (RUN/data), else rebuilt from the raw
    files in `data_dir` and prepared there for the next time (runs trained before it existed)."""
    meta = read_meta(run_dir)
    prepared = run_dir / PREPARED
    if is_prepared(prepared):
        try:
            dataset = load_prepared(prepared)
        except DataError as err:  # an older format, or damaged: made again below
            log.warning("%s", err)
        else:
            if dataset.name == meta.dataset and fingerprint(dataset) == meta.fingerprint:
                return dataset
    dataset = load_sequences(meta.dataset, data_dir, min_core=meta.min_core)
    prepare(run_dir, dataset)
    return dataset


def prepare(run_dir: Path, dataset: SequenceDataset) -> None:
    """Keep `dataset` with the run; where another process wrote it at the same moment, theirs stays."""
    try:
        save_prepared(run_dir / PREPARED, dataset)
    except OSError as err:
        if not is_prepared(run_dir / PREPARED):
            raise DataError(f"{run_dir / PREPARED}: could not write the prepared data: {err}") from err


def load_run(run_dir: Path, data_dir: Path) -> tuple[SequenceDataset, Recommender]:
    """The dataset a run was trained on (`run_dataset`) and its best model."""
    dataset = run_dataset(run_dir, data_dir)
    return dataset, load_model(run_dir, dataset)
