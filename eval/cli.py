"""The `toolrec` command. It lives in `eval` because only `eval` may see all three packages:
tools' and agent's own sub-apps are mounted here, beside training and evaluation, which need
the metrics of `eval.metrics`, and the evaluation runs and their reports:

    toolrec eval run eval/configs/ml1m-default.toml            # -> runs/eval/ml1m-default
    toolrec eval run eval/configs/ml1m-default.toml            # again: continues where it stopped
    toolrec eval run eval/configs/ml100k-smoke.toml --users 5 --out runs/eval/smoke
    toolrec eval report runs/eval/ml1m-default
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Literal, cast

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from agent.cli.app import (
    bench_agent,
    bench_chat_command,
    bench_serve_command,
    chat_command,
    intents_app,
    mcp_command,
    models_app,
    recommend_command,
    serve_command,
)
from agent.llm.base import LLMError
from eval.backbone import evaluate_backbone
from eval.batch import score_command
from eval.config import load_config
from eval.conversation_sim import chat_sim_command, chat_sim_compare_command
from eval.distributed import RayTarget, RayUnavailable, WorkerFailed
from eval.intents import intents_command
from eval.metrics import KS
from eval.report import REPORT_MD, plot_training_curves, write_report
from eval.runner import RESULTS, RunLocked, latest_session_seconds, run_eval
from eval.step_bench import bench_steps_command
from eval.training import METRICS, TrainSpec, train_run
from eval.wishes import bench_wishes_command
from tools.cli import bench_tools_command, data_app, index_app, tool_command
from tools.data.schema import DataError
from tools.io import write_json
from tools.models.checkpoint import load_run
from tools.settings import PathSettings

console = Console()
eval_console = Console(width=None if sys.stdout.isatty() else 180)  # logs keep whole tables
eval_app = typer.Typer(help="Reproducible evaluation runs and their reports.", no_args_is_help=True)
app = typer.Typer(help="An agentic, tool-using LLM recommender.", no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(intents_app, name="intents")
app.add_typer(eval_app, name="eval")
app.command("recommend")(recommend_command)
bench_app = typer.Typer(help="Benchmarks that print JSON figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
bench_app.command("agent")(bench_agent)
app.add_typer(index_app, name="index")
app.command("tool")(tool_command)
app.command("score")(score_command)
bench_app.command("tools")(bench_tools_command)
app.command("chat")(chat_command)
app.command("serve")(serve_command)
app.command("mcp")(mcp_command)
bench_app.command("serve")(bench_serve_command)
bench_app.command("chat")(bench_chat_command)
bench_app.command("steps")(bench_steps_command)
bench_app.command("wishes")(bench_wishes_command)
eval_app.command("chat-sim")(chat_sim_command)
eval_app.command("chat-sim-compare")(chat_sim_compare_command)
eval_app.command("intents")(intents_command)


@bench_app.command("delayed-llm")
def delayed_llm(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1")] = 8011,
    delay_ms: Annotated[float, typer.Option(min=0, help="Every answer after this many milliseconds")] = 500.0,
    fail_first: Annotated[int, typer.Option(min=0, help="Answer the first N requests with 429")] = 0,
) -> None:
    """Serve an OpenAI-compatible LLM on loopback that answers after a fixed delay (for `eval run` at width)."""
    from eval.delayed_llm import serve  # FastAPI and uvicorn: a third of a second that only this command needs

    serve(port, delay_ms, fail_first)


def main() -> None:
    """The `toolrec` command: the app, then an exit that skips freeing every object one by one
    (a million-item run's took a second after its answer was printed). Exit handlers still run."""
    try:
        app()
    except SystemExit as done:
        code = done.code
    else:
        code = 0
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


_D = {name: field.default for name, field in TrainSpec.model_fields.items()}


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="ml-100k, ml-1m, or a dataset folder")] = _D["dataset"],
    model: Annotated[str, typer.Option(help="sasrec | sasrec-attr | bert4rec | popularity | transitions")] = _D["model"],
    out: Annotated[Path, typer.Option(help="Run folder for the checkpoint and metrics")] = Path("runs/sasrec"),
    attribute: Annotated[str | None, typer.Option(help="Attribute type fused by sasrec-attr (genre, year, ...)")] = None,
    epochs: Annotated[int, typer.Option(help="Epoch budget (the cosine schedule reaches zero there)")] = _D["epochs"],
    patience: Annotated[int, typer.Option(help="Epochs without validation NDCG@10 gain before stopping")] = _D["patience"],
    max_seconds: Annotated[float | None, typer.Option(help="Stop training after this many seconds")] = None,
    seed: int = _D["seed"],
    batch_size: Annotated[int | None, typer.Option(help="Default: 32, or 256 for a large catalogue")] = _D["batch_size"],
    lr: float = _D["lr"],
    schedule: Annotated[str, typer.Option(help="constant | cosine (decay to zero at --epochs)")] = _D["schedule"],
    warmup_steps: int = _D["warmup_steps"],
    bucket: Annotated[int, typer.Option(help="Batches drawn together and sorted by length, to pad less (1: none)")] = _D["bucket"],
    dim: int = _D["dim"],
    blocks: int = _D["blocks"],
    heads: int = _D["heads"],
    dropout: float = _D["dropout"],
    max_len: int = _D["max_len"],
    position_std: Annotated[
        float, typer.Option(help="Std of the initial position embeddings (1.0: torch's default, as runs before the position fix)")
    ] = _D["position_std"],
    loss: Annotated[
        str,
        typer.Option(
            help="auto (ce up to 20,000 items, logq above) | ce (full softmax) | logq (softmax over --negatives drawn by "
            "popularity, log-Q corrected) | sce (over uniform ones) | bce | bpr"
        ),
    ] = _D["loss"],
    negatives: Annotated[int | None, typer.Option(help="Default: 2048 for logq and sce, 1 for bce and bpr")] = _D["negatives"],
    eval_users: Annotated[int | None, typer.Option(help="Users validated and tested (default: all, 10,000 at scale)")] = None,
    mask_prob: Annotated[float, typer.Option(help="BERT4Rec's cloze masking rate")] = _D["mask_prob"],
    output_head: Annotated[str, typer.Option(help="BERT4Rec: tied | transform (dense+GELU+LayerNorm, item bias)")] = _D["output_head"],
    min_core: Annotated[int, typer.Option(help="k-core filter on users and items (0: none)")] = _D["min_core"],
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = _D["device"],
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's choice)")] = None,
) -> None:
    """Train a backbone with early stopping on validation NDCG@10; rerunning resumes. Prints
    the final figures and the time-to-quality curve, both kept in RUN/metrics.json."""
    settings = dict(locals())
    settings.pop("out")
    try:
        spec = TrainSpec.model_validate(settings)
        console.print(f"[bold]{spec.model}[/bold] on {spec.dataset} -> {out}")
        metrics = train_run(spec, out, PathSettings().data_dir)
    except (DataError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err
    console.print(_curve_table(metrics["curve"]))
    console.print_json(json.dumps({k: v for k, v in metrics.items() if k != "curve"}))


@bench_app.command("curves")
def bench_curves(
    runs: Annotated[
        list[str], typer.Argument(metavar="LABEL=RUN...", help="Run folders written by `toolrec train`, each with its legend label")
    ],
    out: Annotated[Path, typer.Option(help="PNG to write")] = Path("eval/figures/train-curves.png"),
) -> None:
    """Plot the time-to-quality curves (validation NDCG@10 against seconds) of trained runs."""
    curves = {}
    for entry in runs:
        label, _, folder = entry.rpartition("=")
        path = Path(folder) / METRICS
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist (train the run first)", param_hint="LABEL=RUN")
        curves[label or folder] = json.loads(path.read_text())["curve"]
    plot_training_curves(curves, out)
    console.print(f"wrote {out}")


def _curve_table(curve: list[dict[str, float]]) -> Table:
    table = Table(title="time to quality (validation)")
    for name in ("epoch", "seconds", "NDCG@10"):
        table.add_column(name, justify="right")
    for point in curve:
        table.add_row(str(point["epoch"]), f"{point['seconds']:.0f}", f"{point['ndcg@10']:.4f}")
    return table


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
    metrics = evaluate_backbone(model, data, cast(Literal["valid", "test"], split))  # checked above
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


# --- eval run, eval report -------------------------------------------------------------------


def _table(results: dict) -> Table:
    ks = results["ks"]
    columns = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks if k > 1] + [f"mrr@{k}" for k in ks if k > 1]
    short = {c: c.replace("recall", "R").replace("ndcg", "N").replace("mrr", "MRR") for c in columns}
    table = Table(title=f"{results['name']}: {results['dataset']} {results['split']}, {len(results['user_ids'])} users")
    for name in ("method", "users", "invalid", *(short[c] for c in columns), "LLM calls", "s/user"):
        table.add_column(name, justify="left" if name == "method" else "right")
    for name, v in results["methods"].items():
        if not v["scored"]:
            table.add_row(name, f"0/{v['users']}", "-", *["-"] * len(columns), "-", "-")
            continue
        users = str(v["scored"]) if v["complete"] else f"{v['scored']}/{v['users']}"
        seconds = v["cost"]["seconds_per_user"] or 0.0
        table.add_row(
            name, users, str(v["invalid"]), *(f"{v['metrics'][c]:.4f}" for c in columns), str(v["cost"]["llm_calls"]), f"{seconds:.2f}"
        )
    return table


@eval_app.command("run")
def run_command(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="TOML or YAML run configuration")],
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/eval/<config name>)")] = None,
    users: Annotated[int | None, typer.Option(help="Override the number of sampled users (a prefix of the same sample)")] = None,
    wave: Annotated[int | None, typer.Option(help="Override the users per wave (all methods finish a wave before the next)")] = None,
    llm: Annotated[str | None, typer.Option(help="Override the LLM: local | openai:MODEL")] = None,
    method: Annotated[list[str] | None, typer.Option(help="Only this method (repeat)")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Parallel users for a remote LLM (default: the config's)")] = None,
    restart: Annotated[bool, typer.Option(help="Discard per-user results (the LLM cache is kept)")] = False,
    retry_errors: Annotated[bool, typer.Option(help="Recompute users whose LLM call failed")] = False,
    report: Annotated[bool, typer.Option(help="Write the report when the run is complete")] = True,
    progress: Annotated[bool, typer.Option(help="Progress bars (a log line every 5 users when not a terminal)")] = True,
    ray: Annotated[
        str | None,
        typer.Option(
            metavar="auto|ADDRESS",
            help="Compute the users on Ray: auto starts a local Ray here, an address joins a cluster (pip install 'toolrec[ray]')",
        ),
    ] = None,
    ray_workers: Annotated[
        int | None, typer.Option(min=1, help="Ray workers, each opening the run once (default: the CPUs of this machine or the cluster)")
    ] = None,
    ray_threads: Annotated[int, typer.Option(min=1, help="torch threads per Ray worker")] = 1,
) -> None:
    """Run every method of CONFIG on the same sampled users; rerunning continues where it stopped.
    With --ray, --concurrency is the number of users in flight on each worker."""
    try:
        config = load_config(config_path, users=users, llm=llm, wave=wave)
        target = None if ray is None else RayTarget(address=ray, workers=ray_workers, threads=ray_threads)
    except (OSError, ValueError, ValidationError) as err:
        eval_console.print(f"[red]error:[/] {err}")
        raise typer.Exit(1) from err
    run_dir = out or PathSettings().runs_dir / "eval" / config.name
    eval_console.print(
        f"[bold]{config.name}[/]: {len(config.methods)} methods, {config.users or 'all'} users, LLM {config.llm} -> {run_dir}"
        + ("" if target is None else f" (on Ray: {target.address})")
    )
    try:
        results = run_eval(
            config,
            run_dir,
            concurrency=concurrency,
            only=method,
            restart=restart,
            retry_errors=retry_errors,
            progress=progress,
            console=eval_console,
            config_text=(config_path.suffix, config_path.read_text(encoding="utf-8")),
            ray=target,
        )
    except (DataError, FileNotFoundError, ValueError, LLMError, RunLocked, RayUnavailable, WorkerFailed) as err:
        eval_console.print(f"[red]error:[/] {err}")
        raise typer.Exit(1) from err
    eval_console.print(_table(results))
    latest = latest_session_seconds(results)
    session = "" if latest is None else f" (this session {latest / 60:.1f} min)"
    eval_console.print(f"wall time {results['wall_seconds'] / 60:.1f} min{session}; results: {run_dir / RESULTS}")
    if results["usd"] is not None:
        eval_console.print(f"estimated LLM cost ${results['usd']:,.4f} at the prices set (TOOLREC_LLM_*_USD_PER_MTOK)")
    if report and results["complete"]:
        write_report(run_dir)
        eval_console.print(f"report: {run_dir / REPORT_MD}")


@eval_app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Folder of an `eval run`")],
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed")] = 0,
) -> None:
    """Markdown table with 95% bootstrap intervals and paired tests, plots, config and versions."""
    if not (run_dir / RESULTS).exists():
        eval_console.print(f"[red]error:[/] no {RESULTS} in {run_dir}: run `toolrec eval run CONFIG` first")
        raise typer.Exit(1)
    report = write_report(run_dir, n_boot=resamples, seed=seed)
    eval_console.print((run_dir / REPORT_MD).read_text(encoding="utf-8").split("\n### 95%")[0])
    eval_console.print(f"written: {', '.join(str(run_dir / n) for n in (REPORT_MD, 'report.json', 'metrics.png', 'cost_quality.png'))}")
    if not report["complete"]:
        eval_console.print("[yellow]the run is not complete: some methods have users pending[/]")
