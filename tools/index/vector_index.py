"""Inner-product search over L2-normalised item vectors with faiss (cosine similarity).

Rows are keyed by item ids (dense ids 1..n from `tools.data.sequences`; 0 is padding and never
an item). faiss labels are row positions; the id array maps them back, so every index kind and
every selector works in one id space. The normalised vectors are also kept in memory: they give
the full-catalogue score vector that tools fuse with model scores, and exact scans over small
allowed sets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.npy"
META_FILE = "meta.json"


class IndexMismatchError(ValueError):
    """Stored index files that do not fit together or do not fit the data they serve."""


# Up to this many vectors a flat scan is exact and fast (MiniLM's 384 dimensions at 200,000
# items: about 10 ms); above, "auto" builds HNSW and measures its recall (docs/scale.md)
FLAT_UP_TO = 200_000
SEARCH_TIME = {"nprobe", "ef_search", "exact_below"}  # settings a saved index can be searched with anew
# a masked search that rules out at most this many items searches unfiltered and drops them
FEW_EXCLUDED = 1024
RECALL_QUERIES, RECALL_K = 200, 20


class IndexConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["auto", "flat", "ivf", "hnsw"] = Field("auto", description=f"auto: flat up to {FLAT_UP_TO:,} vectors, hnsw above")
    nlist: int = Field(default=64, ge=1, description="IVF cells, about sqrt(n) to 4*sqrt(n)")
    nprobe: int = Field(default=16, ge=1, description="IVF cells visited per query")
    hnsw_m: int = Field(default=32, ge=4, description="HNSW links per node")
    ef_construction: int = Field(default=80, ge=1)
    # on a million trained item vectors recall@20 was 0.79 at 64, 0.93 at 512, 0.96 at 1,024
    # (1.5, 2.8 and 4.3 ms a search): the width a similar-items call needs to be trusted (docs/size.md)
    ef_search: int = Field(default=1024, ge=1)
    exact_below: int = Field(
        default=4096,
        ge=0,
        description="ivf/hnsw: a masked search whose allowed set has at most this many items "
        "scans it exactly (filtered ANN loses recall on selective masks; the scan is cheap)",
    )

    def for_count(self, count: int) -> IndexConfig:
        """The configuration with "auto" resolved for `count` vectors."""
        if self.kind != "auto":
            return self
        return self.model_copy(update={"kind": "flat" if count <= FLAT_UP_TO else "hnsw"})


class IndexMeta(BaseModel):
    format: int = FORMAT_VERSION
    config: IndexConfig
    dimension: int
    count: int
    encoder: str | None = Field(default=None, description="what produced the vectors")
    recall_at_20: float | None = Field(
        default=None, description=f"an approximate index: its recall@{RECALL_K} against exact search on {RECALL_QUERIES} item vectors"
    )


class SearchHits(NamedTuple):
    """Best first. Where fewer than k items qualify, the tail holds id -1 and score -inf."""

    scores: np.ndarray  # float32, (nq, k) or (k,) for a single query
    ids: np.ndarray  # int64, same shape


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary sibling and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_npy(path: Path, array: np.ndarray) -> None:
    # through a handle: np.save on a path appends ".npy" to the temporary name
    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.save(handle, array)

    atomic_write(path, write)


def _normalized(vectors: np.ndarray, dimension: int | None = None) -> np.ndarray:
    """A 2-D float32 C-contiguous copy with unit rows (zero rows stay zero)."""
    array = np.array(vectors, dtype=np.float32, order="C", ndmin=2)
    if array.ndim != 2 or (dimension is not None and array.shape[1] != dimension):
        raise ValueError(f"expected vectors of dimension {dimension}, got shape {np.shape(vectors)}")
    faiss.normalize_L2(array)
    return array


def _new_faiss_index(vectors: np.ndarray, config: IndexConfig) -> faiss.Index:
    count, dimension = vectors.shape
    index: faiss.Index
    if config.kind == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif config.kind == "ivf":
        if config.nlist > count:
            raise ValueError(f"ivf needs nlist <= number of vectors, got nlist={config.nlist} for {count}")
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, config.nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vectors)
        ivf.nprobe = config.nprobe
        index = ivf
    else:
        hnsw = faiss.IndexHNSWFlat(dimension, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = config.ef_construction
        hnsw.hnsw.efSearch = config.ef_search
        index = hnsw
    index.add(vectors)
    return index


class VectorIndex:
    def __init__(self, index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, meta: IndexMeta) -> None:
        if not (index.ntotal == len(vectors) == len(ids) == meta.count and index.d == vectors.shape[1] == meta.dimension):
            raise IndexMismatchError(
                f"index parts disagree: faiss {index.ntotal}x{index.d}, vectors {vectors.shape}, "
                f"{len(ids)} ids, meta {meta.count}x{meta.dimension}"
            )
        self._index = index
        self._vectors = vectors
        self._ids = ids
        self.meta = meta
        self.max_id = int(ids.max())  # scores and masks are indexed 0..max_id
        self._row_of = np.full(self.max_id + 1, -1, dtype=np.int64)
        self._row_of[ids] = np.arange(len(ids))
        # rows are ids 1..n (every item of a catalogue): a mask over ids is one over rows shifted
        self._rows_are_ids = len(ids) == self.max_id and bool((self._row_of[1:] == np.arange(len(ids))).all())

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: np.ndarray | None = None,
        config: IndexConfig | None = None,
        encoder: str | None = None,
    ) -> VectorIndex:
        """Index `vectors`; row i belongs to `ids[i]`, by default dense id i + 1."""
        normed = _normalized(vectors)
        count, dimension = normed.shape
        if count == 0:
            raise ValueError("cannot index an empty set of vectors")
        config = (config or IndexConfig()).for_count(count)
        ids = np.arange(1, count + 1, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids.shape != (count,) or ids.min() < 1 or len(np.unique(ids)) != count:
            raise ValueError("ids must be unique item ids >= 1 (0 is padding), one per vector")
        meta = IndexMeta(config=config, dimension=dimension, count=count, encoder=encoder)
        built = cls(_new_faiss_index(normed, config), normed, ids, meta)
        if config.kind != "flat":
            built.meta.recall_at_20 = built.recall()
        return built

    def recall(self, queries: int = RECALL_QUERIES, k: int = RECALL_K) -> float:
        """Mean share of the exact top-k that the index returns, for a fixed sample of the
        indexed vectors as queries."""
        rows = np.random.default_rng(0).choice(self.count, min(queries, self.count), replace=False)
        q = self._vectors[rows]
        _, exact = faiss.knn(q, self._vectors, min(k, self.count), metric=faiss.METRIC_INNER_PRODUCT)
        found = self.search(q, min(k, self.count)).ids
        return float(np.mean([len(np.intersect1d(self._ids[e], f)) / len(e) for e, f in zip(exact, found, strict=True)]))

    @property
    def config(self) -> IndexConfig:
        return self.meta.config

    @property
    def count(self) -> int:
        return self.meta.count

    @property
    def dimension(self) -> int:
        return self.meta.dimension

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored (normalised) vectors of the given item ids."""
        ids = np.asarray(ids, dtype=np.int64)
        inside = (ids >= 0) & (ids <= self.max_id)
        rows = np.where(inside, self._row_of[ids.clip(0, self.max_id)], -1)
        if (rows < 0).any():
            raise KeyError(f"ids not in the index: {ids[rows < 0].tolist()}")
        return self._vectors[rows]

    def holds(self, vectors: np.ndarray, ids: np.ndarray) -> bool:
        """Whether the index stores these vectors (before normalising) for these ids."""
        return bool(np.allclose(self.vectors(ids), _normalized(vectors), atol=1e-4))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> SearchHits:
        """Top-k items by cosine similarity to each query.

        `allowed` restricts the result: a boolean mask over ids (length max_id + 1, aligned
        with `scores`, index 0 padding) or an array of allowed ids. Flat search is exact with
        or without a mask; ivf/hnsw searches return min(k, allowed) items, falling back to an
        exact scan where the approximate search comes up short.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        single = np.ndim(queries) == 1
        q = _normalized(queries, self.dimension)
        mask = None if allowed is None else self._row_mask(allowed)
        available = self.count if mask is None else int(np.count_nonzero(mask))
        if mask is not None and self.config.kind != "flat" and available <= self.config.exact_below:
            scores, rows = self._exact(q, np.flatnonzero(mask), k)
        else:
            if mask is not None and self.config.kind == "hnsw" and self.count - available <= FEW_EXCLUDED:
                scores, rows = self._search_then_drop(q, k, mask, self.count - available)
            else:
                scores, rows = self._index.search(q, k, params=self._params(mask))
            short = (rows >= 0).sum(axis=1) < min(k, available)
            if short.any():
                candidates = np.arange(self.count) if mask is None else np.flatnonzero(mask)
                scores[short], rows[short] = self._exact(q[short], candidates, k)
        found = rows >= 0
        hits = SearchHits(
            scores=np.where(found, scores, -np.inf).astype(np.float32),
            ids=np.where(found, self._ids[rows.clip(0)], -1),
        )
        return SearchHits(hits.scores[0], hits.ids[0]) if single else hits

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of the query to every item, indexed by id: length max_id + 1,
        -inf at 0 (padding) and at ids not in the index. A 2-D query gives one row each."""
        single = np.ndim(query) == 1
        q = _normalized(query, self.dimension)
        out = np.full((len(q), self.max_id + 1), -np.inf, dtype=np.float32)
        row_scores = np.empty(self.count, dtype=np.float32)
        for i in range(len(q)):
            # faiss's single-threaded SIMD kernel: numpy's threaded BLAS matvec took 8-12 ms
            # instead of 0.2 ms here when the 2 cores were busy with other work
            faiss.fvec_inner_products_ny(  # type: ignore[attr-defined]  # missing from faiss's stubs
                faiss.swig_ptr(row_scores),
                faiss.swig_ptr(q[i]),
                faiss.swig_ptr(self._vectors),
                self.dimension,
                self.count,
            )
            out[i, self._ids] = row_scores
        return out[0] if single else out

    def save(self, directory: Path) -> None:
        """Write the index; meta.json goes last, so its presence marks a complete save."""
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / INDEX_FILE, lambda tmp: faiss.write_index(self._index, str(tmp)))
        _save_npy(directory / VECTORS_FILE, self._vectors)
        _save_npy(directory / IDS_FILE, self._ids)
        atomic_write(directory / META_FILE, lambda tmp: tmp.write_text(self.meta.model_dump_json(indent=2)))

    @classmethod
    def load(cls, directory: Path, search: IndexConfig | None = None) -> VectorIndex:
        """The index saved in `directory`; with `search`, searched with its search-time settings
        rather than those recorded at build time (they change no stored part)."""
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"no vector index at {directory} ({META_FILE} missing)")
        meta = IndexMeta.model_validate(json.loads(meta_path.read_text()))
        if meta.format != FORMAT_VERSION:
            raise IndexMismatchError(f"{directory}: index format {meta.format}, this code reads {FORMAT_VERSION}")
        if search is not None:
            meta.config = meta.config.model_copy(update=search.model_dump(include=SEARCH_TIME))
        index = faiss.read_index(str(directory / INDEX_FILE))
        vectors = np.load(directory / VECTORS_FILE)
        ids = np.load(directory / IDS_FILE)
        return cls(index, vectors, ids, meta)

    def _row_mask(self, allowed: np.ndarray) -> np.ndarray:
        """`allowed` (a mask over ids or an id array) as a mask over the index's rows."""
        allowed = np.asarray(allowed)
        if self._rows_are_ids and allowed.dtype == np.bool_ and allowed.shape == (self.max_id + 1,):
            return allowed[1:]  # a view: the million-item gather took milliseconds
        return self.id_mask(allowed)[self._ids]

    def _search_then_drop(self, q: np.ndarray, k: int, mask: np.ndarray, excluded: int) -> tuple[np.ndarray, np.ndarray]:
        """A search with no selector, deep enough that k rows remain once the few excluded
        ones are dropped: the selector's bitmap of a million items cost more than the search."""
        depth = k + excluded
        params: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        params.efSearch = max(self.config.ef_search, depth)
        scores, rows = self._index.search(q, depth, params=params)
        keep = (rows >= 0) & mask[rows.clip(0)]
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept rows first, in rank order
        rows = np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(rows, order, 1), -1)
        return np.take_along_axis(scores, order, 1), rows

    def id_mask(self, allowed: np.ndarray) -> np.ndarray:
        """A new boolean mask over ids 0..max_id from a mask of that length or an id array."""
        allowed = np.asarray(allowed)
        if allowed.dtype == np.bool_:
            if allowed.shape != (self.max_id + 1,):
                raise ValueError(f"a boolean mask must have length max_id + 1 = {self.max_id + 1}, got {allowed.shape}")
            return allowed.copy()
        mask = np.zeros(self.max_id + 1, dtype=bool)
        if allowed.size == 0:
            return mask
        if not np.issubdtype(allowed.dtype, np.integer):
            raise TypeError(f"allowed must be a boolean mask or integer ids, got {allowed.dtype}")
        if allowed.min() < 0 or allowed.max() > self.max_id:
            raise ValueError(f"allowed ids outside 0..{self.max_id}")
        mask[allowed] = True
        return mask

    def _params(self, mask: np.ndarray | None) -> faiss.SearchParameters | None:
        params: faiss.SearchParameters
        if self.config.kind == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = self.config.nprobe
        elif self.config.kind == "hnsw":
            # faiss's bundled stubs lag the runtime here and for IDSelectorBitmap(bitmap) below
            hnsw: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            hnsw.efSearch = self.config.ef_search
            params = hnsw
        elif mask is None:
            return None
        else:
            params = faiss.SearchParameters()
        if mask is not None:
            # the selector keeps the packed bitmap alive, the parameters keep the selector
            params.sel = faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))  # type: ignore[call-arg, arg-type]
        return params

    def _exact(self, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among the given rows, padded to k with label -1."""
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        labels = np.full((len(q), k), -1, dtype=np.int64)
        depth = min(k, len(rows))
        if depth:
            found_scores, found = faiss.knn(q, self._vectors[rows], depth, metric=faiss.METRIC_INNER_PRODUCT)
            scores[:, :depth] = found_scores
            labels[:, :depth] = rows[found]
        return scores, labels
