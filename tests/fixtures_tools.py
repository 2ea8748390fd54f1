"""Session fixtures for the tool tests (a pytest plugin: `pytest_plugins = ["fixtures_tools"]`).

Two small backbones are trained on real MovieLens-100K for two epochs each (a plain SASRec
and an attribute-aware SASRec fused with genre): quality does not matter here, every test
checks the tools against a brute-force computation on the same weights. The item text index
uses the real offline MiniLM encoder; its embeddings are kept in pytest's cache folder
(keyed by a hash of the encoder and every item text, so they cannot go stale).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.data.sequences import SequenceDataset
from tools.index.encoder import TextEncoder
from tools.index.item_index import ItemIndexes
from tools.models.base import Recommender
from tools.models.checkpoint import build_model, load_model, new_config
from tools.models.train import TrainConfig, train
from tools.toolbox import INDEX_DIR, Toolbox


def _train(dataset: SequenceDataset, run_dir: Path, kind: str, attribute: str | None) -> Recommender:
    config = new_config(kind, dataset, attribute=attribute, dim=32, blocks=1, heads=1, max_len=50, dropout=0.1)  # type: ignore[arg-type]
    model = build_model(config, dataset)
    # the checkpoint is saved whenever the monitored metric improves: make every epoch improve
    epochs = iter(range(1, 100))
    train(model, dataset, TrainConfig(epochs=2, batch_size=256, lr=3e-3, seed=0), run_dir, lambda _: {"ndcg@10": float(next(epochs))})
    return load_model(run_dir, dataset)


@pytest.fixture(scope="session")
def tool_runs(ml100k: SequenceDataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders of the two trained backbones: {"plain": ..., "genre": ...}."""
    root = tmp_path_factory.mktemp("tool-runs")
    runs = {"plain": root / "sasrec", "genre": root / "sasrec-genre"}
    _train(ml100k, runs["plain"], "sasrec", None)
    _train(ml100k, runs["genre"], "sasrec-attr", "genre")
    return runs


@pytest.fixture(scope="session")
def text_encoder() -> Iterator[TextEncoder]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TOOLREC_OFFLINE", "1")
        patch.delenv("TOOLREC_ENCODER_MODEL_PATH", raising=False)
        yield TextEncoder()


@pytest.fixture(scope="session")
def embedding_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    return Path(cache.mkdir("toolrec-item-embeddings")) if cache is not None else tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="session")
def toolbox(
    ml100k: SequenceDataset,
    tool_runs: dict[str, Path],
    text_encoder: TextEncoder,
    embedding_cache: Path,
) -> Toolbox:
    """Both variants on ML-100K with the item indexes built and saved under the plain run."""
    models = {name: load_model(path, ml100k) for name, path in tool_runs.items()}
    indexes = ItemIndexes.build(ml100k, text_encoder, item_embeddings=models["plain"].item_vectors(), cache_dir=embedding_cache)
    indexes.save(tool_runs["plain"] / INDEX_DIR)
    return Toolbox(ml100k, models, run_dir=tool_runs["plain"], indexes=indexes)
