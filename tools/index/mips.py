"""Top-k by inner product without scoring the whole catalogue: a backbone's score is a user
vector times each item's output vector, unnormalised, so cosine indexes do not apply. One extra
coordinate reduces it to nearest neighbours in L2 (Bachrach et al., RecSys 2014): items become
[v, sqrt(M^2 - |v|^2)] with M the largest norm, queries [q, 0], and then
|q' - v'|^2 = |q|^2 + M^2 - 2 q.v, smallest exactly where q.v is largest. An HNSW graph over the
augmented items answers in about a millisecond at a million items; its recall is measured
against the exact product, never assumed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from pydantic import BaseModel, Field

from tools.io import atomic_path, write_json
from tools.models.base import Embedded
from tools.models.checkpoint import WEIGHTS

INDEX_FILE, META_FILE = "mips-hnsw.faiss", "mips-hnsw.json"


class MipsConfig(BaseModel):
    hnsw_m: int = Field(32, ge=4, description="HNSW links per node")
    ef_construction: int = Field(80, ge=8)
    ef_search: int = Field(256, ge=8, description="Candidates kept while searching: recall against speed")


class MipsMeta(BaseModel):
    config: MipsConfig
    count: int
    dimension: int
    weights: str = Field(description="size and mtime of the weights the vectors came from: a retrained model rebuilds")
    build_seconds: float


class MipsIndex:
    def __init__(self, index: faiss.Index, meta: MipsMeta) -> None:
        self._owner = index  # the wrapper that owns the C++ index: the downcast view below does not
        self.index: Any = faiss.downcast_index(index)  # the HNSW type, whose search width is set per call
        self.meta = meta

    @classmethod
    def build(cls, vectors: np.ndarray, config: MipsConfig, weights: str) -> MipsIndex:
        """Index rows 1.. of `vectors` ([num_items + 1, d]; row 0 is padding); faiss label i is
        dense id i + 1."""
        started = time.perf_counter()
        items = np.ascontiguousarray(vectors[1:], dtype=np.float32)
        norms = np.linalg.norm(items, axis=1)
        extra = np.sqrt(np.maximum(norms.max() ** 2 - norms**2, 0.0))[:, None]
        index = faiss.IndexHNSWFlat(items.shape[1] + 1, config.hnsw_m)
        index.hnsw.efConstruction = config.ef_construction
        index.add(np.ascontiguousarray(np.hstack([items, extra]), dtype=np.float32))
        meta = MipsMeta(
            config=config, count=len(items), dimension=items.shape[1], weights=weights, build_seconds=time.perf_counter() - started
        )
        return cls(index, meta)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """[len(queries), k] dense ids by descending inner product (0 where fewer exist)."""
        self.index.hnsw.efSearch = max(self.meta.config.ef_search, k)
        augmented = np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1))]), dtype=np.float32)
        _, labels = self.index.search(augmented, min(k, self.meta.count))
        ids: np.ndarray = labels.astype(np.int64) + 1  # -1 (nothing found) becomes padding
        return ids

    def save(self, directory: Path) -> None:
        with atomic_path(directory / INDEX_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        write_json(directory / META_FILE, self.meta.model_dump())

    @classmethod
    def load(cls, directory: Path, weights: str, config: MipsConfig) -> MipsIndex | None:
        """The saved index, if one was built from these weights with these settings."""
        if not (directory / META_FILE).exists() or not (directory / INDEX_FILE).exists():
            return None
        meta = MipsMeta.model_validate_json((directory / META_FILE).read_text())
        if meta.weights != weights or meta.config.model_dump(exclude={"ef_search"}) != config.model_dump(exclude={"ef_search"}):
            return None
        meta.config = config  # the search width may change freely
        return cls(faiss.read_index(str(directory / INDEX_FILE)), meta)


def run_index(run_dir: Path, model: Embedded, config: MipsConfig | None = None) -> tuple[MipsIndex, float]:
    """The run's inner-product index (RUN/index), built from the model's output vectors and
    saved when there is none for these weights; with the seconds its build took (0 when it was
    loaded)."""
    config = config or MipsConfig()
    weights = run_dir / WEIGHTS
    stamp = f"{weights.stat().st_size}:{weights.stat().st_mtime_ns}"
    directory = run_dir / "index"
    index = MipsIndex.load(directory, stamp, config)
    if index is not None:
        return index, 0.0
    with torch.inference_mode():
        vectors = model.output_vectors().float().numpy()
    index = MipsIndex.build(vectors, config, stamp)
    index.save(directory)
    return index, index.meta.build_seconds
