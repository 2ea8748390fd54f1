"""The vector indexes of one dataset/run: catalogue text, and optionally a trained backbone's
item embeddings, both keyed by dense item id (1..n) like the models' score vectors.

Stored under `run_dir / "index"` with a manifest that fingerprints the catalogue (count, ids in
dense order, item texts), so an index is never silently used with another dataset, another
filtering of the same dataset, or changed item texts.
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from tools.data.sequences import SequenceDataset
from tools.index.encoder import TextEncoder
from tools.index.vector_index import (
    IndexConfig,
    IndexMismatchError,
    SearchHits,
    VectorIndex,
    atomic_write,
)

Space = Literal["text", "model"]
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class CatalogueFingerprint(BaseModel):
    dataset: str
    num_items: int
    item_ids_sha256: str
    texts_sha256: str


class IndexManifest(BaseModel):
    format: int = FORMAT_VERSION
    catalogue: CatalogueFingerprint
    encoder: str
    has_model: bool
    build_stats: dict[str, float]


def _sha256(values: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for value in values:
        digest.update(value.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def fingerprint(dataset: SequenceDataset) -> CatalogueFingerprint:
    return CatalogueFingerprint(
        dataset=dataset.name,
        num_items=dataset.num_items,
        item_ids_sha256=_sha256(dataset.items.ids),
        texts_sha256=_sha256([item.text() for item in dataset.items]),
    )


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux; the process high-water mark also counts torch and faiss
    # allocations, which tracemalloc would miss
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model_rows(item_embeddings: np.ndarray, num_items: int) -> np.ndarray:
    """Rows for dense ids 1..n: an embedding table with a padding row 0 (n + 1 rows, as
    models with padding_idx=0 keep it) loses that row."""
    if item_embeddings.ndim != 2 or len(item_embeddings) not in (num_items, num_items + 1):
        raise ValueError(
            f"item_embeddings must have {num_items} rows (ids 1..n) or {num_items + 1} (row 0 padding), got shape {item_embeddings.shape}"
        )
    return item_embeddings[len(item_embeddings) - num_items :]


class ItemIndexes:
    def __init__(
        self,
        manifest: IndexManifest,
        text: VectorIndex,
        model: VectorIndex | None,
        encoder: TextEncoder | None,
    ) -> None:
        if encoder is not None and encoder.name != manifest.encoder:
            raise IndexMismatchError(f"text index was built with encoder {manifest.encoder!r}, got {encoder.name!r}")
        self.manifest = manifest
        self.text = text
        self.model = model
        self.encoder = encoder

    @classmethod
    def build(
        cls,
        dataset: SequenceDataset,
        encoder: TextEncoder,
        item_embeddings: np.ndarray | None = None,
        config: IndexConfig | None = None,
        cache_dir: Path | None = None,
    ) -> ItemIndexes:
        """Embed every item's text (read from `cache_dir` when the same catalogue was embedded
        before) and index it; index `item_embeddings` too when given."""
        config = config or IndexConfig()
        model_rows = None if item_embeddings is None else _model_rows(item_embeddings, dataset.num_items)
        started = time.perf_counter()
        texts = [item.text() for item in dataset.items]
        vectors = encoder.encode(texts) if cache_dir is None else encoder.encode_cached(texts, cache_dir)
        encoded = time.perf_counter()
        text = VectorIndex.build(vectors, config=config, encoder=encoder.name)
        text_built = time.perf_counter()
        model = None if model_rows is None else VectorIndex.build(model_rows, config=config, encoder="model")
        done = time.perf_counter()
        stats = {
            "items": float(dataset.num_items),
            "encode_s": encoded - started,
            "text_index_s": text_built - encoded,
            "model_index_s": done - text_built,
            "total_s": done - started,
            "peak_rss_mib": _peak_rss_mib(),
        }
        manifest = IndexManifest(catalogue=fingerprint(dataset), encoder=encoder.name, has_model=model is not None, build_stats=stats)
        return cls(manifest, text, model, encoder)

    @property
    def build_stats(self) -> dict[str, float]:
        return self.manifest.build_stats

    def check(self, dataset: SequenceDataset) -> None:
        """Raise IndexMismatchError unless these indexes were built for this catalogue."""
        expected, stored = fingerprint(dataset), self.manifest.catalogue
        if stored != expected:
            differs = [field for field in CatalogueFingerprint.model_fields if getattr(stored, field) != getattr(expected, field)]
            raise IndexMismatchError(
                f"index built for {stored.dataset!r} ({stored.num_items} items) does not match "
                f"dataset {expected.dataset!r} ({expected.num_items} items): {', '.join(differs)} differ; rebuild it"
            )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.text.save(directory / "text")
        if self.model is not None:
            self.model.save(directory / "model")
        atomic_write(directory / MANIFEST_FILE, lambda tmp: tmp.write_text(self.manifest.model_dump_json(indent=2)))

    @classmethod
    def load(cls, directory: Path, dataset: SequenceDataset, encoder: TextEncoder | None = None) -> ItemIndexes:
        """Load and check against `dataset`; without an encoder, `query_text` is unavailable."""
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no item indexes at {directory} ({MANIFEST_FILE} missing)")
        manifest = IndexManifest.model_validate(json.loads(manifest_path.read_text()))
        if manifest.format != FORMAT_VERSION:
            raise IndexMismatchError(f"{directory}: index format {manifest.format}, this code reads {FORMAT_VERSION}")
        indexes = cls(
            manifest,
            VectorIndex.load(directory / "text"),
            VectorIndex.load(directory / "model") if manifest.has_model else None,
            encoder,
        )
        indexes.check(dataset)
        return indexes

    def space(self, space: Space) -> VectorIndex:
        if space == "text":
            return self.text
        if self.model is None:
            raise ValueError("no model-embedding index: build with item_embeddings")
        return self.model

    def query_text(self, text: str) -> np.ndarray:
        """Cosine similarity of a free-text query to every item's text: length n + 1, index 0
        is -inf padding, aligned with the models' score vectors."""
        if self.encoder is None:
            raise RuntimeError("query_text needs a TextEncoder: pass one to ItemIndexes.load")
        return self.text.scores(self.encoder.encode_query(text))

    def similar(self, item_ids: Sequence[int] | np.ndarray, k: int, space: Space = "text", allowed: np.ndarray | None = None) -> SearchHits:
        """At most k items closest to the centroid of `item_ids` (themselves excluded), best
        first; `allowed` restricts the result as in `VectorIndex.search`."""
        index = self.space(space)
        ids = np.asarray(item_ids, dtype=np.int64)
        if ids.size == 0:
            raise ValueError("similar needs at least one item id")
        query = index.vectors(ids).mean(axis=0)
        mask = np.ones(index.max_id + 1, dtype=bool) if allowed is None else index.id_mask(allowed)
        mask[ids] = False
        hits = index.search(query, k, allowed=mask)
        found = hits.ids >= 0
        return SearchHits(hits.scores[found], hits.ids[found])
