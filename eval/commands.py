"""`toolrec eval run CONFIG` and `toolrec eval report RUN_DIR`.

    toolrec eval run eval/configs/ml1m-default.toml            # -> runs/eval/ml1m-default
    toolrec eval run eval/configs/ml1m-default.toml            # again: continues where it stopped
    toolrec eval run eval/configs/ml100k-smoke.toml --users 5 --out runs/eval/smoke
    toolrec eval report runs/eval/ml1m-default
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from agent.llm.base import LLMError
from eval.config import load_config
from eval.report import REPORT_MD, write_report
from eval.runner import RESULTS, RunLocked, run_eval
from tools.data.schema import DataError
from tools.settings import PathSettings

console = Console(width=None if sys.stdout.isatty() else 180)  # logs keep whole tables
eval_app = typer.Typer(help="Reproducible evaluation runs and their reports.", no_args_is_help=True)


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
        table.add_row(name, users, str(v["invalid"]), *(f"{v['metrics'][c]:.4f}" for c in columns), str(v["cost"]["llm_calls"]), f"{seconds:.2f}")
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
) -> None:
    """Run every method of CONFIG on the same sampled users; rerunning continues where it stopped."""
    try:
        config = load_config(config_path, users=users, llm=llm, wave=wave)
    except (OSError, ValueError, ValidationError) as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(1) from err
    run_dir = out or PathSettings().runs_dir / "eval" / config.name
    console.print(f"[bold]{config.name}[/]: {len(config.methods)} methods, {config.users or 'all'} users, LLM {config.llm} -> {run_dir}")
    try:
        results = run_eval(
            config, run_dir, concurrency=concurrency, only=method, restart=restart, retry_errors=retry_errors,
            progress=progress, console=console, config_text=(config_path.suffix, config_path.read_text(encoding="utf-8")),
        )  # fmt: skip
    except (DataError, FileNotFoundError, ValueError, LLMError, RunLocked) as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(1) from err
    console.print(_table(results))
    console.print(f"wall time {results['wall_seconds'] / 60:.1f} min; results: {run_dir / RESULTS}")
    if report and results["complete"]:
        write_report(run_dir)
        console.print(f"report: {run_dir / REPORT_MD}")


@eval_app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Folder of an `eval run`")],
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed")] = 0,
) -> None:
    """Markdown table with 95% bootstrap intervals and paired tests, plots, config and versions."""
    if not (run_dir / RESULTS).exists():
        console.print(f"[red]error:[/] no {RESULTS} in {run_dir}: run `toolrec eval run CONFIG` first")
        raise typer.Exit(1)
    report = write_report(run_dir, n_boot=resamples, seed=seed)
    console.print((run_dir / REPORT_MD).read_text(encoding="utf-8").split("\n### 95%")[0])
    console.print(f"written: {', '.join(str(run_dir / n) for n in (REPORT_MD, 'report.json', 'metrics.png', 'cost_quality.png'))}")
    if not report["complete"]:
        console.print("[yellow]the run is not complete: some methods have users pending[/]")
