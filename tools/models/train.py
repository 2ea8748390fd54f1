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

import numpy as np
import torch
from pydantic import BaseModel, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from tools.data.sequences import SequenceDataset
from tools.io import atomic_dir, write_json
from tools.models.base import Recommender
from tools.models.checkpoint import save_model
from tools.models.popularity import Popularity

Validate = Callable[[Recommender], dict[str, float]]
MONITOR = "ndcg@10"


class TrainConfig(BaseModel):
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = Field(5, description="Epochs without validation gain before stopping")
    seed: int = 42
    max_seconds: float | None = Field(None, description="Stop after this much training time")


class TrainProgress(BaseModel):
    """What `state/progress.json` holds between epochs."""

    epoch: int = 0
    best_epoch: int = 0
    best: dict[str, float] = Field(default_factory=dict)
    history: list[dict[str, float]] = Field(default_factory=list)
    train_seconds: float = 0.0
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
    if isinstance(model, Popularity):
        model.fit(dataset.popularity())
        save_model(run_dir, model, dataset)
        return TrainProgress(best=validate(model), done=True)

    state_dir = run_dir / "state"
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    progress = _resume(state_dir, model, optimiser, config)
    sequences = [s for s in dataset.train_sequences() if len(s) >= 2]
    steps = math.ceil(len(sequences) / config.batch_size)

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, transient=False) as bars:
        epochs = bars.add_task("epochs", total=config.epochs, completed=progress.epoch, info=_info(progress))
        while not progress.done and progress.epoch < config.epochs:
            started = time.perf_counter()
            model.train()
            order = np.random.default_rng(config.seed + progress.epoch).permutation(len(sequences))
            batches = bars.add_task(f"epoch {progress.epoch + 1}", total=steps, info="")
            total = 0.0
            for step in range(steps):
                batch = [sequences[i] for i in order[step * config.batch_size : (step + 1) * config.batch_size]]
                loss = model.loss(batch)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item()
                bars.update(batches, advance=1, info=f"loss {total / (step + 1):.4f}")
            bars.remove_task(batches)

            metrics = validate(model)
            progress.epoch += 1
            progress.train_seconds += time.perf_counter() - started
            progress.history.append({"epoch": progress.epoch, "loss": total / steps, **metrics})
            if metrics[MONITOR] > progress.best.get(MONITOR, -1.0):
                progress.best, progress.best_epoch = metrics, progress.epoch
                save_model(run_dir, model, dataset)
            progress.done = (
                progress.epoch - progress.best_epoch >= config.patience
                or (config.max_seconds is not None and progress.train_seconds >= config.max_seconds)
            )
            _save_state(state_dir, model, optimiser, progress, config)
            bars.update(epochs, completed=progress.epoch, info=_info(progress, total / steps, metrics))
    return progress


def _info(progress: TrainProgress, loss: float | None = None, metrics: dict[str, float] | None = None) -> str:
    parts = [] if loss is None else [f"loss {loss:.4f}"]
    if metrics:
        parts.append(f"valid {MONITOR} {metrics[MONITOR]:.4f}")
    if progress.best:
        parts.append(f"best {progress.best[MONITOR]:.4f} @ {progress.best_epoch}")
    return "  ".join(parts)


def _save_state(state_dir: Path, model: Recommender, optimiser: torch.optim.Optimizer, progress: TrainProgress, config: TrainConfig) -> None:
    with atomic_dir(state_dir) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "last.safetensors"))
        torch.save({"optimiser": optimiser.state_dict(), "rng": torch.get_rng_state()}, tmp / "optimiser.pt")
        write_json(tmp / "progress.json", progress.model_dump())
        write_json(tmp / "train_config.json", config.model_dump())


def _resume(state_dir: Path, model: Recommender, optimiser: torch.optim.Optimizer, config: TrainConfig) -> TrainProgress:
    if not (state_dir / "progress.json").exists():
        return TrainProgress()
    saved = TrainConfig.model_validate_json((state_dir / "train_config.json").read_text())
    # epochs, patience and the time cap may change on resume; anything else would mix two runs
    fixed = {"batch_size", "lr", "weight_decay", "seed"}
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
