"""`toolrec bench steps`: seconds per training step of a backbone on real histories, so that a
training lever (a loss, the heap setting, a batch size) is measured alone, in seconds, without
a whole training run. Timed after a warm-up, on random batches of the dataset's training
sequences; prints JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from eval.training import TrainSpec, build_network
from tools.data.fetch import load_sequences
from tools.models.heap import keep_heap
from tools.models.train import attach_sampler, fit_step, table_bytes, use_bf16
from tools.settings import PathSettings

WARMUP = 3


def time_steps(spec: TrainSpec, steps: int, data_dir: Path, heap: bool) -> dict[str, Any]:
    """Mean seconds of `steps` optimiser steps (forward, backward, AdamW) after a warm-up."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    data = load_sequences(spec.dataset, data_dir, min_core=spec.min_core)
    spec = spec.resolved(data.num_items)
    model = build_network(spec, data).train()
    kept = keep_heap(table_bytes(model)) if heap else False
    attach_sampler(model, data)
    optimiser = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    sequences = [s for s in data.train_sequences() if len(s) >= 2]
    rng = np.random.default_rng(spec.seed)
    assert spec.batch_size is not None  # resolved above
    batches = [[sequences[i] for i in rng.choice(len(sequences), spec.batch_size, replace=False)] for _ in range(WARMUP + steps)]
    bf16 = use_bf16("auto", model.device)
    started = 0.0
    for n, batch in enumerate(batches):
        if n == WARMUP:
            started = time.perf_counter()
        fit_step(model, optimiser, batch, bf16)
    seconds = (time.perf_counter() - started) / steps
    shown = {"dataset", "model", "loss", "negatives", "batch_size", "max_len", "dim", "blocks"}
    return {
        "seconds_per_step": round(seconds, 4),
        "steps": steps,
        "heap_kept": kept,
        "bf16": bf16,
        "threads": torch.get_num_threads(),
        "settings": spec.model_dump(mode="json", include=shown),
    }


def bench_steps_command(
    dataset: Annotated[str, typer.Option(help="ml-100k, ml-1m, or a dataset folder")] = "ml-1m",
    model: Annotated[str, typer.Option(help="sasrec | sasrec-attr | bert4rec")] = "sasrec",
    loss: Annotated[str, typer.Option(help="auto | ce | sce | logq | bce | bpr")] = "auto",
    negatives: int | None = None,
    batch_size: Annotated[int | None, typer.Option(help="Default: what training picks for the catalogue's size")] = None,
    steps: Annotated[int, typer.Option(help="Steps timed after the warm-up")] = 40,
    heap: Annotated[bool, typer.Option(help="Keep the heap as training does (tools/models/heap.py)")] = True,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's choice)")] = None,
) -> None:
    """Seconds per training step on real histories (a warm-up first), as JSON."""
    spec = TrainSpec(dataset=dataset, model=model, loss=loss, negatives=negatives, batch_size=batch_size, threads=threads)
    print(json.dumps(time_steps(spec, steps, PathSettings().data_dir, heap)))
