"""`toolrec score`: every user's top-k to Parquet (tools.batch_scoring), in this process or on
Ray (`--ray auto|ADDRESS`), where each worker opens the run once (its prepared data
memory-mapped, the index read from RUN/index) and scores blocks of users."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Annotated, cast

import numpy as np
import pyarrow as pa
import torch
import typer
from rich.console import Console

from eval.distributed import RayTarget, RayUnavailable, WorkerFailed, WorkerPool, connect
from tools.batch_scoring import BlockRunner, Scorer, ScoreSettings, in_process, score_run
from tools.data.schema import DataError
from tools.data.sequences import HistorySplit
from tools.index.mips import MipsConfig
from tools.settings import PathSettings

console = Console()


def on_ray(target: RayTarget, run_dir: Path, data_dir: Path, settings: ScoreSettings) -> BlockRunner:
    """Blocks scored by Ray workers, their tables yielded as they finish."""

    def run(scorer: Scorer, blocks: list[np.ndarray]) -> Iterator[pa.Table]:
        with connect(target) as workers, WorkerPool(partial(Scorer, run_dir, data_dir, settings), workers, threads=target.threads) as pool:
            for _, table in pool.run(Scorer.block, blocks):
                yield table

    return run


def score_command(
    run: Annotated[Path, typer.Option(help="Run folder written by `toolrec train`")],
    out: Annotated[Path, typer.Option(help="Parquet file to write: user_id, items (best first), scores")] = Path("topk.parquet"),
    k: Annotated[int, typer.Option(min=1, max=10_000, help="Items per user")] = 100,
    ann: Annotated[bool, typer.Option("--ann", help="Search an inner-product HNSW index over the item vectors (recall reported)")] = False,
    split: Annotated[str, typer.Option(help="full (whole histories, live use) | test | valid (the evaluation's inputs)")] = "full",
    ef_search: Annotated[int, typer.Option(help="--ann: HNSW search width (recall against speed)")] = MipsConfig().ef_search,
    users: Annotated[int | None, typer.Option(min=1, help="A seeded sample of this many users (for a benchmark; default: all)")] = None,
    ray: Annotated[
        str | None, typer.Option(metavar="auto|ADDRESS", help="Score on Ray: auto starts a local Ray here, an address joins a cluster")
    ] = None,
    ray_workers: Annotated[int | None, typer.Option(min=1, help="Ray workers (default: every CPU)")] = None,
    threads: Annotated[
        int | None, typer.Option(help="torch CPU threads in this process, and per Ray worker (default: all; 1 on Ray)")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data folder (default: TOOLREC_DATA_DIR or ./data)")] = None,
) -> None:
    """Every user's top-k to Parquet, streamed in bounded memory; prints users per second (and
    with --ann the index build time and recall@k against exact scoring) as JSON."""
    if threads:
        torch.set_num_threads(threads)
    data = data_dir if data_dir is not None else PathSettings().data_dir
    try:
        settings = ScoreSettings(k=k, ann=ann, split=cast(HistorySplit, split), mips=MipsConfig(ef_search=ef_search), users=users)
        runner = (
            in_process if ray is None else on_ray(RayTarget(address=ray, workers=ray_workers, threads=threads or 1), run, data, settings)
        )
        report = score_run(run, out, data, settings, runner=runner)
    except (DataError, FileNotFoundError, ValueError, RayUnavailable, WorkerFailed) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err
    console.print_json(report.model_dump_json())
