"""Every user's top-k, streamed to Parquet in bounded memory: the batch job a service runs
nightly (`toolrec score`).

Users are taken in order of history length (batches pad little) in blocks whose score matrix
stays near BLOCK_SCORES floats, whatever the catalogue. Exact by default: the backbone scores
the whole catalogue, the history is masked, the top k kept (ties: lower id first, as the
evaluation ranks them). With `ann`, the user's vector searches an inner-product HNSW index over
the item vectors instead (`tools.index.mips`), and recall@k against exact scoring is measured on
a sample of users and reported with the run.

The file has one row per user: `user_id`, `items` (item ids, best first) and `scores`.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tools.data.sequences import HistorySplit
from tools.index.mips import MipsConfig, MipsIndex, run_index
from tools.io import atomic_path
from tools.models.base import Embedded, Recommender
from tools.models.checkpoint import load_run
from tools.models.scoring import by_length, users_per_block

TopK = Callable[[list[np.ndarray], int], tuple[np.ndarray, np.ndarray]]
SCHEMA = pa.schema([("user_id", pa.string()), ("items", pa.list_(pa.string())), ("scores", pa.list_(pa.float32()))])

# users a search through the index takes at once: at a million items the exact rule's 32 left
# each search, forward pass and Parquet row group too small to run at speed
ANN_BLOCK = 1024


class ScoreSettings(BaseModel):
    k: int = Field(100, ge=1, le=10_000)
    ann: bool = Field(False, description="Search an inner-product HNSW index instead of scoring every item")
    split: HistorySplit = Field("full", description="full: each user's whole history (live use); test/valid: the evaluation's inputs")
    mips: MipsConfig = Field(default_factory=MipsConfig)
    users: int | None = Field(None, ge=1, description="A seeded sample of this many users (a benchmark); None: every user")
    recall_users: int = Field(1000, ge=0, description="--ann: users whose top-k is also scored exactly, for recall@k")
    seed: int = 0


class ScoreReport(BaseModel):
    users: int
    k: int
    ann: bool
    seconds: float
    users_per_second: float
    index_seconds: float | None = Field(None, description="--ann: building the index (0 when it was reused)")
    recall_at_k: float | None = Field(None, description="--ann: mean overlap with the exact top-k on the sampled users")
    recall_users: int = 0
    peak_rss_mb: float
    out: str


class Scorer:
    """What scoring a block of users needs, opened once per process (a Ray worker opens its own:
    the run's prepared data is memory-mapped, the index read from RUN/index)."""

    def __init__(self, run_dir: Path, data_dir: Path, settings: ScoreSettings) -> None:
        self.settings = settings
        self.dataset, model = load_run(run_dir, data_dir)
        self.model = model.eval()
        self.histories = [self.dataset.history(user, settings.split) for user in self.dataset.user_ids]
        self.item_ids = np.array(["", *self.dataset.items.ids], dtype=object)  # by dense id
        self.exact: TopK = partial(exact_top_k, self.model)
        self.top_k, self.index_seconds = self.exact, None
        if settings.ann:
            if not isinstance(model, Embedded):
                raise ValueError(f"--ann needs a model that scores by a product of vectors (sasrec, bert4rec), not {model.config.kind}")
            index, self.index_seconds = run_index(run_dir, model, settings.mips)
            self.top_k = partial(ann_top_k, model, index)

    def blocks(self) -> list[np.ndarray]:
        """The users to score (all, or the seeded sample) by history length, in blocks whose
        score matrix stays near BLOCK_SCORES floats (tools.models.scoring); through the index,
        which scores no catalogue, in blocks of ANN_BLOCK."""
        rows = np.arange(len(self.histories))
        if self.settings.users is not None and self.settings.users < len(rows):
            rows = np.sort(np.random.default_rng(self.settings.seed).choice(len(rows), self.settings.users, replace=False))
        order = rows[by_length([self.histories[i] for i in rows])]
        return list(_blocks(order, ANN_BLOCK if self.settings.ann else users_per_block(self.dataset.num_items)))

    def block(self, rows: np.ndarray) -> pa.Table:
        ids, scores = self.top_k([self.histories[i] for i in rows], self.settings.k)
        items = [self.item_ids[row[row > 0]].tolist() for row in ids]
        kept = [row[: len(names)].tolist() for row, names in zip(scores, items, strict=True)]
        return pa.table({"user_id": [self.dataset.user_ids[i] for i in rows], "items": items, "scores": kept}, schema=SCHEMA)


# runs the scorer's blocks, in process or elsewhere (eval.batch: on Ray), yielding their tables
BlockRunner = Callable[[Scorer, list[np.ndarray]], Iterator[pa.Table]]


def in_process(scorer: Scorer, blocks: list[np.ndarray]) -> Iterator[pa.Table]:
    return (scorer.block(rows) for rows in blocks)


def score_run(
    run_dir: Path, out: Path, data_dir: Path, settings: ScoreSettings, progress: bool = True, runner: BlockRunner = in_process
) -> ScoreReport:
    scorer = Scorer(run_dir, data_dir, settings)
    blocks = scorer.blocks()
    users = sum(len(b) for b in blocks)
    started = time.perf_counter()
    columns = [TextColumn("scoring users"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    bars = Progress(*columns, disable=not progress, console=Console(stderr=True))  # stdout carries the JSON report
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer, bars as bar:
        task = bar.add_task("users", total=users)
        for table in runner(scorer, blocks):
            writer.write_table(table, row_group_size=max(len(table), 1))
            bar.update(task, advance=len(table))
    seconds = time.perf_counter() - started
    recall = _recall(scorer.top_k, scorer.exact, scorer.histories, settings) if settings.ann else None
    return ScoreReport(
        users=users,
        k=settings.k,
        ann=settings.ann,
        seconds=round(seconds, 2),
        users_per_second=round(users / max(seconds, 1e-9), 1),
        index_seconds=None if scorer.index_seconds is None else round(scorer.index_seconds, 1),
        recall_at_k=None if recall is None else round(recall, 4),
        recall_users=min(settings.recall_users, users) if settings.ann else 0,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        out=str(out),
    )


@torch.inference_mode()
def exact_top_k(model: Recommender, histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """([users, k] dense ids, their scores), the history masked; 0 / -inf pad a short list."""
    scores = model.score(histories).float()
    for row, history in enumerate(histories):
        scores[row, torch.as_tensor(np.array(history, dtype=np.int64))] = -torch.inf
    values, ids = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    return _ties_by_id(ids.numpy(), values.numpy())


@torch.inference_mode()
def ann_top_k(model: Embedded, index: MipsIndex, histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """As `exact_top_k`, from the index: k plus the longest history are searched, so that k
    remain once the history is dropped."""
    queries = model.user_vectors(histories).float()
    found = index.search(queries.numpy(), k + max(len(h) for h in histories))
    vectors = model.output_vectors().float()
    ids = np.zeros((len(histories), k), dtype=np.int64)
    for row, history in enumerate(histories):
        kept = found[row][(found[row] > 0) & ~np.isin(found[row], history)][:k]
        ids[row, : len(kept)] = kept
    scores = torch.einsum("ud,ukd->uk", queries, vectors[torch.from_numpy(ids)]).numpy()
    scores[ids == 0] = -np.inf
    return _ties_by_id(ids, scores)


def _ties_by_id(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row by descending score, equal scores by ascending id (the evaluation's order)."""
    order = np.lexsort((ids, -scores), axis=1)
    return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)


def _recall(approximate: TopK, exact: TopK, histories: list[np.ndarray], settings: ScoreSettings) -> float | None:
    if not settings.recall_users:
        return None
    sample = np.random.default_rng(settings.seed).choice(len(histories), min(settings.recall_users, len(histories)), replace=False)
    hits = []
    for rows in _blocks(sample[by_length([histories[i] for i in sample])], 64):
        chunk = [histories[i] for i in rows]
        truth, _ = exact(chunk, settings.k)
        found, _ = approximate(chunk, settings.k)
        hits += [len(np.intersect1d(t[t > 0], f[f > 0])) / max((t > 0).sum(), 1) for t, f in zip(truth, found, strict=True)]
    return float(np.mean(hits))


def _blocks(order: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), size):
        yield order[start : start + size]
