"""Training loop with early stopping on validation NDCG@10, seeded and resumable.

After every epoch the loop writes `RUN/state/` (last weights, optimiser, progress) atomically;
a rerun with the same configuration continues from there. The best weights by the validation
metric are the run's checkpoint (`RUN/model.safetensors`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from tools.data.sequences import SequenceDataset
from tools.io import atomic_dir, write_json
from tools.models.base import Counted, PopularitySampler, Recommender
from tools.models.checkpoint import save_model
from tools.models.heap import keep_heap

Validate = Callable[[Recommender], dict[str, float]]
MONITOR = "ndcg@10"
REFRESH_STEPS = 10
LOG_LINES = 10  # progress lines an epoch where the output is not a terminal


class TrainConfig(BaseModel):
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = Field(5, description="Epochs without validation gain before stopping")
    seed: int = 42
    max_seconds: float | None = Field(None, description="Stop after this much training time")
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="Learning rate after warm-up: constant, or cosine decay to zero at `epochs`"
    )
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warm-up from zero")
    bucket: int = Field(1, ge=1, description="Batches whose rows are drawn together and sorted by length (1: plain shuffled batches)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Matmul precision while training (auto: bf16 on a CPU with AMX or AVX-512-BF16, else fp32); weights stay fp32"
    )


class TrainProgress(BaseModel):
    """What `state/progress.json` holds between epochs."""

    epoch: int = 0
    best_epoch: int = 0
    best: dict[str, float] = Field(default_factory=dict)
    history: list[dict[str, float]] = Field(default_factory=list, description="Per epoch: loss, validation metrics, elapsed seconds")
    train_seconds: float = Field(0.0, description="Wall time of training and validation, resumed runs included")
    done: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    model: Recommender,
    dataset: SequenceDataset,
    config: TrainConfig,
    run_dir: Path,
    validate: Validate,
) -> TrainProgress:
    seed_everything(config.seed)
    if isinstance(model, Counted):
        started = time.perf_counter()
        model.fit(dataset)
        save_model(run_dir, model, dataset)
        return TrainProgress(best=validate(model), done=True, train_seconds=time.perf_counter() - started)

    keep_heap(table_bytes(model))  # a step's large buffers are reused rather than faulted in afresh
    attach_sampler(model, dataset)
    state_dir = run_dir / "state"
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    progress = _resume(state_dir, model, optimiser, config)
    sequences = [s for s in dataset.train_sequences() if len(s) >= 2]
    steps = math.ceil(len(sequences) / config.batch_size)
    lengths = np.array([min(len(s), model.config.max_len) for s in sequences])
    mean_batch_positions = lengths.sum() / steps
    bf16 = use_bf16(config.precision, model.device)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_factor(config, steps), last_epoch=progress.epoch * steps - 1)

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}")]
    # redrawn every REFRESH_STEPS steps, not by rich's 10 Hz refresh thread: that thread took
    # a core from the two torch threads (an ML-1M epoch 30.9 s -> 26.9 s without it)
    with Progress(*columns, transient=False, auto_refresh=False) as bars:
        epochs = bars.add_task("epochs", total=config.epochs, completed=progress.epoch, info=_info(progress))
        while not progress.done and progress.epoch < config.epochs:
            started = time.perf_counter()
            model.train()
            order = _batch_order(lengths, config, np.random.default_rng(config.seed + progress.epoch))
            batches = bars.add_task(f"epoch {progress.epoch + 1}", total=steps, info="")
            total = 0.0
            for step, rows in enumerate(order):
                # a batch's mean loss weighs by its share of the epoch's positions, so that
                # bucketing leaves every position's weight equal
                total += fit_step(model, optimiser, [sequences[i] for i in rows], bf16, lengths[rows].sum() / mean_batch_positions)
                schedule.step()
                bars.update(batches, advance=1, info=f"loss {total / (step + 1):.4f}", refresh=step % REFRESH_STEPS == 0)
                if not bars.console.is_terminal and (step + 1) % max(steps // LOG_LINES, 1) == 0:
                    # a log file gets no bar: a line a tenth of an epoch (25 minutes at a million items)
                    bars.console.print(f"epoch {progress.epoch + 1}: step {step + 1}/{steps}, loss {total / (step + 1):.4f}")
            bars.remove_task(batches)

            metrics = validate(model)
            progress.epoch += 1
            progress.train_seconds += time.perf_counter() - started
            progress.history.append(
                {"epoch": progress.epoch, "seconds": round(progress.train_seconds, 2), "loss": total / steps, **metrics}
            )
            if metrics[MONITOR] > progress.best.get(MONITOR, -1.0):
                progress.best, progress.best_epoch = metrics, progress.epoch
                save_model(run_dir, model, dataset)
            progress.done = progress.epoch - progress.best_epoch >= config.patience or (
                config.max_seconds is not None and progress.train_seconds >= config.max_seconds
            )
            _save_state(state_dir, model, optimiser, progress, config)
            bars.update(epochs, completed=progress.epoch, info=_info(progress, total / steps, metrics), refresh=True)
            if not bars.console.is_terminal:
                bars.console.print(f"epoch {progress.epoch}: {_info(progress, total / steps, metrics)}")
    return progress


def table_bytes(model: Recommender) -> int:
    """The size of the model's item table (and of its gradient): float32 rows of `dim`."""
    return (model.config.num_items + 1) * model.config.dim * 4


def attach_sampler(model: Recommender, dataset: SequenceDataset) -> None:
    """Give a logq model the training data's popularity to draw its negatives from."""
    if model.config.loss == "logq":
        model.sampler = PopularitySampler(dataset.popularity())


def fit_step(model: Recommender, optimiser: torch.optim.Optimizer, batch: list[np.ndarray], bf16: bool, weight: float = 1.0) -> float:
    """One optimiser step on `batch` (the loss under bf16 autocast where asked); its loss."""
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model.loss(batch) * weight
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item()


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def _batch_order(lengths: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of each batch of one epoch: a shuffled epoch cut into pools of `bucket`
    batches, each pool sorted by length before it is cut into batches, so a batch pads to a
    length close to its rows' own. Small pools keep batches mixed: sorting whole epochs (64
    batches a pool) made every batch one length band and cost quality per epoch (docs/benchmarks.md)."""
    order = rng.permutation(len(lengths))
    size = config.batch_size
    if config.bucket > 1:
        pool = config.bucket * size
        order = np.concatenate(
            [chunk[np.argsort(lengths[chunk], kind="stable")] for chunk in np.split(order, range(pool, len(order), pool))]
        )
    batches = [order[start : start + size] for start in range(0, len(order), size)]
    if config.bucket > 1:
        rng.shuffle(batches)
    return batches


def _lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate's multiplier at an optimiser step."""
    total = max(config.epochs * steps_per_epoch, 1)

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "cosine":
            done = (step - config.warmup_steps) / max(total - config.warmup_steps, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))
        return 1.0

    return factor


def _info(progress: TrainProgress, loss: float | None = None, metrics: dict[str, float] | None = None) -> str:
    parts = [] if loss is None else [f"loss {loss:.4f}"]
    if metrics:
        parts.append(f"valid {MONITOR} {metrics[MONITOR]:.4f}")
    if progress.best:
        parts.append(f"best {progress.best[MONITOR]:.4f} @ {progress.best_epoch}")
    return "  ".join(parts)


def _save_state(
    state_dir: Path, model: Recommender, optimiser: torch.optim.Optimizer, progress: TrainProgress, config: TrainConfig
) -> None:
    with atomic_dir(state_dir) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "last.safetensors"))
        torch.save({"optimiser": optimiser.state_dict(), "rng": torch.get_rng_state()}, tmp / "optimiser.pt")
        write_json(tmp / "progress.json", progress.model_dump())
        write_json(tmp / "train_config.json", config.model_dump())


def _resume(state_dir: Path, model: Recommender, optimiser: torch.optim.Optimizer, config: TrainConfig) -> TrainProgress:
    if not (state_dir / "progress.json").exists():
        return TrainProgress()
    saved = TrainConfig.model_validate_json((state_dir / "train_config.json").read_text())
    # epochs, patience and the time cap may change on resume (epochs not under a cosine
    # schedule, whose horizon they are); anything else would mix two runs
    fixed = {"batch_size", "lr", "weight_decay", "seed", "schedule", "warmup_steps", "bucket"} | (
        {"epochs"} if config.schedule == "cosine" else set()
    )
    if saved.model_dump(include=fixed) != config.model_dump(include=fixed):
        raise ValueError(f"{state_dir}: an interrupted run with other settings ({saved}); use another --out or delete it")
    model.load_state_dict(load_file(str(state_dir / "last.safetensors")))
    extra = torch.load(state_dir / "optimiser.pt", weights_only=False)
    optimiser.load_state_dict(extra["optimiser"])
    torch.set_rng_state(extra["rng"])
    progress = TrainProgress.model_validate_json((state_dir / "progress.json").read_text())
    # raising the epoch budget or patience reopens a run that had stopped
    progress.done = progress.epoch - progress.best_epoch >= config.patience or progress.epoch >= config.epochs
    return progress
