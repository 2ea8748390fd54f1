"""Training a backbone run from one typed specification, shared by `toolrec train`,
`toolrec bench train` and `toolrec eval run` (which trains a run its config names but that
does not exist yet).

The specification is written into the run folder (`train_spec.json`) before training starts,
so a run is reused only when its settings match, and `metrics.json` records the
time-to-quality curve (validation NDCG@10 against elapsed seconds) beside the final figures.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from eval.backbone import evaluate_backbone
from tools.data.fetch import load_sequences
from tools.data.sequences import SequenceDataset
from tools.io import write_json
from tools.models.base import ModelConfig, ModelKind, Recommender
from tools.models.checkpoint import CONFIG, PREPARED, build_model, load_model, new_config, prepare, read_meta
from tools.models.train import MONITOR, TrainConfig, TrainProgress, seed_everything, train

SPEC, METRICS = "train_spec.json", "metrics.json"
KS = (10,)
# settings that change what is learnt; the others (threads, device) change only how fast
RUNTIME_ONLY = frozenset({"threads", "device"})
# what a run recorded before `position_std` existed was initialised with (torch's default)
LEGACY_POSITION_STD = 1.0
# Above this many items the full softmax, whose cost per position grows with the catalogue,
# outweighs the rest of a step many times over: "auto" then trains the logq sampled softmax on
# larger batches and validates on a fixed sample of users (docs/size.md)
FULL_SOFTMAX_UP_TO = 20_000
SAMPLED_NEGATIVES = 2048
SMALL_BATCH = 32
# the optimiser walks the whole item table every step, so a large catalogue's batch grows with
# it: 256 users at 100,000 items, 1,000 at a million (2,500 took training past 12 GB there)
ITEMS_PER_BATCH_ROW, LARGE_BATCH = 1000, (256, 4096)
LARGE_EVAL_USERS = 10_000


class TrainSpec(BaseModel):
    """Everything a run's weights depend on. The defaults reach the README's ML-1M quality on a
    2-core CPU within minutes (docs/benchmarks.md)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("ml-100k", description="ml-100k, ml-1m, or a dataset folder")
    model: ModelKind = "sasrec"
    attribute: str | None = Field(None, description="Attribute type fused by sasrec-attr (genre, year, ...)")
    min_core: int = Field(0, ge=0, description="k-core filter on users and items (0: none)")
    # the network
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.1
    max_len: int = 200
    # why 0.02: tools/models/layers.py Encoder; runs recorded without it used LEGACY_POSITION_STD
    position_std: float = Field(0.02, gt=0.0, description="Std of the initial position embeddings")
    loss: Literal["auto", "ce", "sce", "logq", "bce", "bpr"] = Field(
        "auto", description=f"auto: ce (full softmax) up to {FULL_SOFTMAX_UP_TO:,} items, logq above"
    )
    negatives: int | None = Field(None, ge=1, description=f"None: {SAMPLED_NEGATIVES} for sce and logq, 1 for bce and bpr")
    mask_prob: float = Field(0.2, gt=0.0, lt=1.0, description="BERT4Rec's cloze masking rate")
    output_head: Literal["tied", "transform"] = Field("tied", description="BERT4Rec's output layer")
    # the optimisation
    # with positions at 0.02 validation passes 0.18 by epoch 11; a 25-epoch cosine ends within
    # 0.0011 NDCG@10 of a 40-epoch one in 58% of the time (docs/benchmarks.md)
    epochs: int = 25
    patience: int = Field(5, description="Epochs without validation NDCG@10 gain before stopping")
    max_seconds: float | None = Field(None, description="Stop training after this many seconds")
    seed: int = 42
    # a CPU epoch costs the same at batch 32, 64 or 128 (the work is per position), so the
    # smaller batch's twice as many updates an epoch come free (docs/benchmarks.md)
    batch_size: int | None = Field(
        None, ge=1, description=f"None: {SMALL_BATCH}, or one row per {ITEMS_PER_BATCH_ROW} items above {FULL_SOFTMAX_UP_TO:,} items"
    )
    eval_users: int | None = Field(
        None, ge=1, description=f"Users validated and tested (a seeded sample); None: all, or {LARGE_EVAL_USERS:,} at scale"
    )
    lr: float = 2e-3
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 0
    bucket: int = 1
    # the runtime
    threads: int | None = Field(None, description="torch CPU threads (default: torch's choice)")
    device: str = Field("auto", description="auto | cpu | cuda")

    def resolved(self, num_items: int) -> TrainSpec:
        """The spec with every automatic choice made for a catalogue of `num_items`: what a run
        records, so that the choice is visible and a rerun reproduces it."""
        large = num_items > FULL_SOFTMAX_UP_TO
        loss = self.loss if self.loss != "auto" else ("logq" if large else "ce")
        chosen = {
            "loss": loss,
            "negatives": self.negatives or (SAMPLED_NEGATIVES if loss in ("sce", "logq") else 1),
            "batch_size": self.batch_size or (int(np.clip(num_items // ITEMS_PER_BATCH_ROW, *LARGE_BATCH)) if large else SMALL_BATCH),
            "eval_users": self.eval_users or (LARGE_EVAL_USERS if large else None),
        }
        return self.model_copy(update=chosen)

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.model_dump(include=set(TrainConfig.model_fields)))

    def differences(self, other: TrainSpec) -> list[str]:
        """`name: ours != theirs` for every setting that changes the weights."""
        ours, theirs = self.model_dump(exclude=set(RUNTIME_ONLY)), other.model_dump(exclude=set(RUNTIME_ONLY))
        return [f"{key}: {ours[key]!r} != {theirs[key]!r}" for key in ours if ours[key] != theirs[key]]


class SettingsMismatch(ValueError):
    """An existing run was trained with other settings than the ones asked for."""


def read_spec(run_dir: Path) -> TrainSpec | None:
    path = run_dir / SPEC
    if not path.exists():
        return None
    recorded = json.loads(path.read_text())
    recorded.setdefault("position_std", LEGACY_POSITION_STD)
    recorded.setdefault("eval_users", None)  # runs before it validated every user
    return TrainSpec.model_validate(recorded)


def check_reusable(run_dir: Path, spec: TrainSpec, num_items: int | None = None) -> None:
    """Raise SettingsMismatch unless the run in `run_dir` was trained with `spec`'s settings,
    its automatic choices made for the run's catalogue (`num_items`, else the checkpoint's)."""
    saved = read_spec(run_dir)
    if saved is None:
        raise SettingsMismatch(f"{run_dir} has no recorded settings ({SPEC}); retrain it or point the config elsewhere")
    if num_items is None and (run_dir / CONFIG).exists():
        num_items = read_meta(run_dir).model.num_items
    differing = (spec.resolved(num_items) if num_items else spec).differences(saved)
    if differing:
        raise SettingsMismatch(f"{run_dir} was trained with other settings (asked != recorded): " + "; ".join(differing))


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _keep(metrics: dict[str, float]) -> dict[str, float]:
    """The three figures metrics.json records at 10."""
    return {name: metrics[name] for name in ("ndcg@10", "recall@10", "mrr@10")}


def seconds_to(progress: TrainProgress, threshold: float) -> float | None:
    """Elapsed seconds at the first epoch whose validation NDCG@10 reached `threshold`."""
    return next((h["seconds"] for h in progress.history if h.get(MONITOR, 0.0) >= threshold), None)


def eval_sample(data: SequenceDataset, count: int | None, seed: int) -> list[int] | None:
    """The dataset rows of `count` users drawn once for a seed (None: every user)."""
    if count is None or count >= len(data.user_ids):
        return None
    return sorted(np.random.default_rng(seed).choice(len(data.user_ids), size=count, replace=False).tolist())


def build_network(spec: TrainSpec, data: SequenceDataset) -> Recommender:
    """The untrained backbone `spec` describes, seeded, on its device."""
    network = spec.model_dump(include=set(ModelConfig.model_fields) - {"kind", "num_items", "attribute"})
    config = new_config(spec.model, data, attribute=spec.attribute, **network)
    seed_everything(spec.seed)  # initial weights too, not only the batch order
    return build_model(config, data).to(_device(spec.device))


def train_run(spec: TrainSpec, out: Path, data_dir: Path, data: SequenceDataset | None = None, threshold: float = 0.18) -> dict[str, Any]:
    """Train (or resume) the run `out` with `spec`, evaluate its best checkpoint on test, and
    write and return `metrics.json`. A run folder holding other settings is refused."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    data = data or load_sequences(spec.dataset, data_dir, min_core=spec.min_core)
    spec = spec.resolved(data.num_items)
    if (out / SPEC).exists():
        check_reusable(out, spec, data.num_items)
    net = build_network(spec, data)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SPEC, spec.model_dump(mode="json"))
    if not (out / PREPARED).exists():
        prepare(out, data)
    users = eval_sample(data, spec.eval_users, spec.seed)

    def validate(candidate: Recommender) -> dict[str, float]:
        return _keep(evaluate_backbone(candidate, data, "valid", ks=KS, users=users))

    progress = train(net, data, spec.train_config(), out, validate)
    started = time.perf_counter()
    test = _keep(evaluate_backbone(load_model(out, data), data, "test", ks=KS, users=users))
    metrics = {
        f"seconds_to_ndcg10_{threshold}": seconds_to(progress, threshold),
        "best_valid_ndcg10": progress.best.get(MONITOR),
        "test_ndcg10": test["ndcg@10"],
        "test_recall10": test["recall@10"],
        "seconds_per_epoch": round(progress.train_seconds / max(progress.epoch, 1), 2),
        "epochs": progress.epoch,
        "best_epoch": progress.best_epoch,
        "train_seconds": round(progress.train_seconds, 1),
        "test_seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "valid": progress.best,
        "test": test,
        "curve": [{"epoch": h["epoch"], "seconds": h.get("seconds"), MONITOR: round(h[MONITOR], 5)} for h in progress.history],
        "settings": spec.model_dump(mode="json"),
    }
    write_json(out / METRICS, metrics)
    return metrics


def prepare_runs(runs: dict[Path, TrainSpec], data_dir: Path, say: Callable[[str], None]) -> None:
    """Train every run in `runs` that is not finished (resuming an interrupted one); a finished
    run is reused only if it was trained with the same settings (SettingsMismatch otherwise)."""
    for path, spec in runs.items():
        if (path / METRICS).exists():
            check_reusable(path, spec)
            say(f"reusing {path}: trained with the config's settings")
            continue
        say(f"training {path}: {spec.model} on {spec.dataset} (settings in {path / SPEC})")
        metrics = train_run(spec, path, data_dir)
        say(f"trained {path} in {metrics['train_seconds']:.0f} s: test NDCG@10 {metrics['test']['ndcg@10']:.4f}")
