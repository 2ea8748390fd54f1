"""`eval run --ray`: a wave's pending (method, users) split into blocks that Ray workers
compute (eval.distributed). Each worker opens the run once (the dataset, the models, the
runners, the LLM in the run's reply cache) and computes a block as the in-process run
computes it (eval.work), with torch's threads pinned, so the lines are the same; the driver
journals each block's lines as it finishes. `per_worker` blocks run at once on a worker: the
cap of users in flight per worker for a hosted LLM (1 otherwise).

A worker opens the run from the driver's paths: a cluster's hosts must see the repository, the
data and the run folder at the same paths (a shared file system), and have toolrec installed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from pydantic import BaseModel

from agent.llm.base import LLM
from agent.llm.cache import CachedLLM
from agent.runtime import make_llm
from agent.settings import AgentSettings
from eval.config import EvalConfig, Method
from eval.distributed import RayTarget, WorkerPool, connect, split
from eval.methods import Context
from eval.store import UserResult
from eval.work import RANK_BATCH, Worker, ranks

# Blocks of a list method: enough per slot to keep every slot busy to the end of a wave (four
# per slot), few enough users each that a killed run loses little; never more than this many.
MAX_BLOCK = 64


class EvalJob(BaseModel):
    """What every worker opens once."""

    config: EvalConfig
    data_dir: Path
    cache_dir: Path
    cwd: Path
    fingerprints: dict[str, str]
    settings: AgentSettings  # the LLM's endpoint and key as the driver read them: a cluster's hosts may lack the environment


class Block(BaseModel):
    method: str
    users: list[str]


class BlockOutput(BaseModel):
    records: list[UserResult]
    llm: str | None


def open_worker(job: EvalJob) -> Worker:
    """A worker's state: relative paths in the config are the driver's, so the worker works
    from the driver's folder (the actor's process is this job's alone)."""
    if not job.cwd.is_dir():
        raise FileNotFoundError(f"{job.cwd} is not on this host: a cluster needs the repository at the driver's path")
    os.chdir(job.cwd)
    ctx = Context(job.config, data_dir=job.data_dir)

    def llm() -> LLM:
        return CachedLLM(make_llm(job.config.llm, job.settings), job.cache_dir)

    return Worker(ctx, job.fingerprints, llm)


def run_block(worker: Worker, block: Block) -> BlockOutput:
    records: list[UserResult] = []
    worker.compute(worker.ctx.config.method(block.method), block.users, records.extend)
    return BlockOutput(records=records, llm=worker.llm_name)


def block_size(method: Method, pending: int, slots: int) -> int:
    if ranks(method):
        return RANK_BATCH
    return max(1, min(MAX_BLOCK, math.ceil(pending / (4 * slots))))


WaveRunner = Callable[[Sequence[tuple[Method, Sequence[str]]]], Iterator[tuple[str, BlockOutput]]]


@contextmanager
def ray_fanout(target: RayTarget, job: EvalJob, per_worker: int) -> Iterator[WaveRunner]:
    """Ray started or joined, and its workers opened, for the duration of a run; yields what
    runs a wave: (method name, a block's lines) for every block, as blocks finish."""
    with connect(target) as workers, WorkerPool(partial(open_worker, job), workers, per_worker=per_worker, threads=target.threads) as pool:
        yield partial(_run_wave, pool, workers * per_worker)


def _run_wave(pool: WorkerPool[Worker], slots: int, wave: Sequence[tuple[Method, Sequence[str]]]) -> Iterator[tuple[str, BlockOutput]]:
    blocks = [
        Block(method=method.name, users=list(users)) for method, todo in wave for users in split(todo, block_size(method, len(todo), slots))
    ]
    for index, out in pool.run(run_block, blocks):
        yield blocks[index].method, out
