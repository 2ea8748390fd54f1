"""The `toolrec` command. It lives in `eval` because only `eval` may see all three packages:
tools' and agent's own sub-apps are mounted here, beside training and evaluation, which need
the metrics of `eval.metrics`."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from eval.backbone import evaluate_backbone
from eval.commands import eval_app
from eval.conversation_sim import chat_sim_command
from eval.metrics import KS
from agent.bench import bench_agent
from agent.cli import models_app, recommend_command
from agent.commands import bench_serve_command, chat_command, mcp_command, serve_command
from tools.cli import bench_tools_command, data_app, index_app, tool_command
from tools.data.fetch import load_sequences
from tools.data.schema import DataError
from tools.io import write_json
from tools.models.base import Recommender
from tools.models.registry import build_model, load_model, load_run, new_config
from tools.models.train import TrainConfig, seed_everything, train as train_model
from tools.settings import PathSettings

console = Console()
app = typer.Typer(help="An agentic, tool-using LLM recommender.", no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")
app.command("recommend")(recommend_command)
bench_app = typer.Typer(help="Benchmarks that print JSON figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
bench_app.command("agent")(bench_agent)
app.add_typer(index_app, name="index")
app.command("tool")(tool_command)
bench_app.command("tools")(bench_tools_command)
app.command("chat")(chat_command)
app.command("serve")(serve_command)
app.command("mcp")(mcp_command)
bench_app.command("serve")(bench_serve_command)
eval_app.command("chat-sim")(chat_sim_command)

VALID_KS = (10,)


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="ml-100k, ml-1m, or a dataset folder")] = "ml-100k",
    model: Annotated[str, typer.Option(help="sasrec | sasrec-attr | bert4rec | popularity")] = "sasrec",
    out: Annotated[Path, typer.Option(help="Run folder for the checkpoint and metrics")] = Path("runs/sasrec"),
    attribute: Annotated[str | None, typer.Option(help="Attribute type fused by sasrec-attr (genre, year, ...)")] = None,
    epochs: int = 200,
    patience: Annotated[int, typer.Option(help="Epochs without validation NDCG@10 gain before stopping")] = 5,
    max_seconds: Annotated[float | None, typer.Option(help="Stop training after this many seconds")] = None,
    seed: int = 42,
    batch_size: int = 64,
    lr: float = 2e-3,
    dim: int = 64,
    blocks: int = 2,
    heads: int = 1,
    dropout: float = 0.1,
    max_len: int = 200,
    loss: Annotated[str, typer.Option(help="ce (full softmax) | bce | bpr")] = "ce",
    negatives: int = 1,
    min_core: Annotated[int, typer.Option(help="k-core filter on users and items (0: none)")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's choice)")] = None,
) -> None:
    """Train a backbone with early stopping on validation NDCG@10; rerunning resumes."""
    if threads:
        torch.set_num_threads(threads)
    if model not in ("sasrec", "sasrec-attr", "bert4rec", "popularity"):
        raise typer.BadParameter(f"unknown model {model!r}", param_hint="--model")
    if loss not in ("ce", "bce", "bpr"):
        raise typer.BadParameter(f"unknown loss {loss!r}", param_hint="--loss")
    try:
        data = load_sequences(dataset, PathSettings().data_dir, min_core=min_core)
        config = new_config(
            model,  # type: ignore[arg-type]
            data, attribute=attribute, dim=dim, blocks=blocks, heads=heads, dropout=dropout,
            max_len=max_len, loss=loss, negatives=negatives,  # type: ignore[arg-type]
        )
    except (DataError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err
    seed_everything(seed)  # initial weights too, not only the batch order
    net = build_model(config, data).to(_device(device))
    settings = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed, max_seconds=max_seconds)
    console.print(f"[bold]{model}[/bold] on {data.name}: {len(data.user_ids):,} users, {data.num_items:,} items -> {out}")

    def validate(candidate: Recommender) -> dict[str, float]:
        return _keep(evaluate_backbone(candidate, data, "valid", ks=VALID_KS))

    progress = train_model(net, data, settings, out, validate)
    best = load_model(out, data)
    metrics = {
        "valid": progress.best,
        "test": _keep(evaluate_backbone(best, data, "test", ks=VALID_KS)),
        "train_seconds": round(progress.train_seconds, 1),
        "epochs": progress.epoch,
        "best_epoch": progress.best_epoch,
        "seconds_per_epoch": round(progress.train_seconds / max(progress.epoch, 1), 2),
        "peak_rss_mib": _peak_rss_mib(),
    }
    write_json(out / "metrics.json", metrics)
    console.print_json(json.dumps(metrics))


def _keep(metrics: dict[str, float]) -> dict[str, float]:
    """The three figures metrics.json records at 10."""
    return {name: metrics[name] for name in ("ndcg@10", "recall@10", "mrr@10")}


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option(help="Run folder written by `toolrec train`")],
    split: Annotated[str, typer.Option(help="test | valid")] = "test",
) -> None:
    """Full-ranking metrics at 1, 5, 10, 20 for every user; writes RUN/evaluation.json."""
    if split not in ("test", "valid"):
        raise typer.BadParameter("split is test or valid", param_hint="--split")
    try:
        data, model = load_run(run, PathSettings().data_dir)
    except (DataError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err
    started = time.perf_counter()
    metrics = evaluate_backbone(model, data, split)
    seconds = time.perf_counter() - started
    table = Table(title=f"{run} on {data.name} ({split}, {len(data.user_ids):,} users, full ranking)")
    table.add_column("k", justify="right")
    for name in ("recall", "ndcg", "mrr"):
        table.add_column(name.upper() if name != "recall" else "Recall/HR", justify="right")
    for k in KS:
        table.add_row(str(k), *(f"{metrics[f'{name}@{k}']:.4f}" for name in ("recall", "ndcg", "mrr")))
    console.print(table)
    console.print(f"evaluated {len(data.user_ids):,} users in {seconds:.2f} s")
    write_json(run / "evaluation.json", {"split": split, "users": len(data.user_ids), "seconds": round(seconds, 3), "metrics": metrics})

