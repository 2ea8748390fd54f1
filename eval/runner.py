"""A resumable evaluation run: every method on the same sampled users, one JSONL line per
(method, user) as it finishes, `results.json` (atomically) after each method.

    config = load_config(Path("eval/configs/ml1m-default.toml"))
    results = run_eval(config, Path("runs/eval/ml1m-default"))

RUN_DIR holds:
    config.json     the resolved configuration (config.<ext> the file as given)
    versions.json   python, torch, transformers, llama_cpp, faiss, ..., the git commit
    sessions.jsonl  one line per start (and per clean end) of `eval run`: wall time survives kills
    users.jsonl     per-user results (see eval.store)
    llm-cache/      LLM replies keyed by model, prompt and sampling parameters (CachedLLM)
    results.json    per method: metrics, users scored, invalid outputs, cost figures
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import agent
import prompts
import tools
from agent.fitting.files import fit_missing
from agent.llm.base import LLM, NoLLM
from agent.llm.cache import CachedLLM
from agent.runtime import make_llm
from agent.settings import AgentSettings
from eval.config import AgentMethod, EvalConfig, Method
from eval.cost import TokenPrices
from eval.distributed import RayTarget, check_reachable
from eval.methods import Context, is_repeat, set_threads
from eval.metrics import MISSING, summarise
from eval.ray_run import EvalJob, ray_fanout
from eval.store import ResultStore, UserResult, read_jsonl
from eval.training import prepare_runs
from eval.work import Worker
from tools.io import write_json
from tools.settings import PathSettings

RESULTS, CONFIG, VERSIONS, SESSIONS, CACHE_DIR = "results.json", "config.json", "versions.json", "sessions.jsonl", "llm-cache"
RUNNING_METRIC = "ndcg@10"
Wave = list[tuple[Method, list[str]]]


class RunLocked(RuntimeError):
    """Another `eval run` is writing to this run folder."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on RUN_DIR/.lock for the whole run: a second process on the same
    folder would compute users twice and interleave its lines with ours."""
    path = run_dir / ".lock"
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            f.seek(0)
            raise RunLocked(f"{run_dir} is in use by another `eval run` ({f.read().strip() or 'pid unknown'})") from err
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class StopRun(BaseException):
    """Raised by a test hook to simulate a kill between two users."""


# --- provenance --------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(cwd: Path | None = None) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


# what a per-user result depends on: the agent, the tools, the prompts and the eval code that
# turns their output into a rank (not the runner, the report or the CLI)
OUTCOME_EVAL_FILES = ("config.py", "methods.py", "metrics.py", "store.py")


def source_hash() -> str:
    """A hash of the code and prompts a per-user result depends on, so that results computed
    by different code under one fingerprint can be told apart (the report warns)."""
    eval_root = Path(__file__).resolve().parent
    files = [eval_root / name for name in OUTCOME_EVAL_FILES]
    for package in (agent, tools, prompts):
        root = Path(next(iter(package.__path__)))
        files += [p for p in root.rglob("*") if p.suffix in (".py", ".md") and "__pycache__" not in p.parts]
    digest = hashlib.sha256()
    base = eval_root.parent
    for path in sorted(files):
        digest.update(str(path.relative_to(base) if path.is_relative_to(base) else path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def versions(llm_name: str | None = None) -> dict[str, Any]:
    packages = ("toolrec", "torch", "transformers", "llama_cpp_python", "faiss-cpu", "numpy", "scipy", "langgraph", "openai", "pydantic")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": {p: _version(p) for p in packages},
        "git": git_commit(Path(__file__).resolve().parent),
        "code": source_hash(),
        "llm": llm_name,
    }


def _append_line(path: Path, data: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(data) + "\n")
        f.flush()
        os.fsync(f.fileno())


def session_seconds(session_lines: Iterable[dict[str, Any]], records: Iterable[UserResult]) -> dict[int, float]:
    """Wall time of each session of the run (the lines of sessions.jsonl): from its start to its
    clean end, or, for a killed session, to its last written line. A folder reused across code
    versions sums them all, so the latest session's own figure is kept beside the total."""
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    for line in session_lines:
        if "start" in line:
            starts[line["session"]] = line["start"]
        if "end" in line:
            ends[line["session"]] = line["end"]
    last: dict[int, float] = {}
    for record in records:
        last[record.session] = max(last.get(record.session, 0.0), record.t)
    return {s: round(max(ends.get(s, last.get(s, start)), start) - start, 1) for s, start in sorted(starts.items())}


def latest_session_seconds(results: dict[str, Any]) -> float | None:
    """The latest session's own wall time, where the run took more than one."""
    sessions = results.get("session_seconds", {})
    return sessions[max(sessions, key=int)] if len(sessions) > 1 else None


# --- summaries ---------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def _fell_back(record: UserResult) -> bool:
    """An unusable LLM answer made the method fall back (an agent's search ended by a repeated
    call is not counted: that is how it converges)."""
    notes = record.diagnostics.get("fallbacks")
    return any(not is_repeat(n) for n in notes) if isinstance(notes, list) else record.fallback


def method_summary(
    config: EvalConfig, method: Method, fp: str, users: Sequence[str], done: dict[str, UserResult], prices: TokenPrices
) -> dict[str, Any]:
    """A method's figures on the users it has finished. Its cost estimate counts every call's
    tokens, cached ones at the tokens they took when first made: what the run costs afresh."""
    got = [done[u] for u in users if u in done]
    prompt_tokens = sum(r.prompt_tokens for r in got)
    completion_tokens = sum(r.completion_tokens for r in got)
    ranks = np.array([r.rank if r.rank is not None else MISSING for r in got], dtype=np.int64)
    calls = [s for r in got for s in r.call_seconds]
    seconds = [r.seconds for r in got]
    n = max(len(got), 1)
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in got)
    cost = {
        "llm_calls": sum(r.llm_calls for r in got),
        "cached_calls": sum(r.cached_calls for r in got),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "tokens": tokens,
        "usd": prices.estimate(prompt_tokens, completion_tokens),
        "llm_calls_per_user": round(sum(r.llm_calls for r in got) / n, 3),
        "tokens_per_user": round(tokens / n, 1),
        "seconds_per_user": round(float(np.mean(seconds)), 4) if seconds else None,
        "latency_p50": _percentile(seconds, 50),
        "latency_p95": _percentile(seconds, 95),
        "llm_call_p50": _percentile(calls, 50),
        "llm_call_p95": _percentile(calls, 95),
        "seconds_total": round(sum(seconds), 1),
    }
    invalid = [r for r in got if not r.valid]
    return {
        "kind": method.kind,
        "label": method.label or method.name,
        "versus": method.versus,
        "fingerprint": fp,
        "complete": len(got) == len(users),
        "users": len(users),
        "scored": len(got),
        "pending": len(users) - len(got),
        "invalid": len(invalid),
        "errors": sum(1 for r in invalid if r.error and not r.error.startswith("invalid list")),
        "invalid_examples": [{"user": r.user, "error": r.error} for r in invalid[:5]],
        "fallbacks": sum(1 for r in got if _fell_back(r)),
        "backfilled_items": sum(r.backfilled for r in got),
        "metrics": summarise(ranks, config.ks) if len(got) else {},
        "cost": cost,
    }


def build_results(
    config: EvalConfig,
    run_dir: Path,
    users: Sequence[str],
    store: ResultStore,
    methods: Sequence[Method],
    fingerprints: dict[str, str],
    prices: TokenPrices,
) -> dict[str, Any]:
    done = {m.name: store.done(m.name, fingerprints[m.name]) for m in methods}
    per_method = {m.name: method_summary(config, m, fingerprints[m.name], users, done[m.name], prices) for m in methods}
    started = [d for d in done.values() if d]
    common = [u for u in users if started and all(u in d for d in started)]
    session_lines = read_jsonl(run_dir / SESSIONS)
    code = {line["session"]: line.get("code") for line in session_lines if "start" in line}
    sessions = session_seconds(session_lines, store.records)
    used = sorted({str(code.get(r.session)) for d in done.values() for r in d.values()})
    for m in methods:
        per_method[m.name]["code_versions"] = sorted({str(code.get(r.session)) for r in done[m.name].values()})
    return {
        "name": config.name,
        "dataset": config.dataset,
        "split": config.split,
        "seed": config.seed,
        "ks": config.ks,
        "k": config.k,
        "llm": config.llm,
        "backbone": config.backbone,
        "complete": all(s["complete"] for s in per_method.values()),
        "wall_seconds": round(sum(sessions.values()), 1),
        "session_seconds": {str(k): v for k, v in sessions.items()},
        "user_ids": list(users),
        "common_users": len(common),
        "code_versions": used,
        "prices": prices.model_dump() if prices.known else None,
        "usd": sum(s["cost"]["usd"] for s in per_method.values()) if prices.known else None,
        "methods": per_method,
    }


# --- progress ----------------------------------------------------------------------------


class Tracker:
    """Per-method progress with the running NDCG@10 and the invalid count: rich bars on a
    terminal, a log line every `every` users otherwise (nohup, CI)."""

    def __init__(self, console: Console, enabled: bool = True, every: int = 5) -> None:
        self.console, self.enabled, self.every = console, enabled, every
        self.live = enabled and console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.fields[method]:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("NDCG@10 {task.fields[ndcg]:.4f}  invalid {task.fields[invalid]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.state: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> Tracker:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def start(self, method: str, total: int, done: Iterable[UserResult]) -> None:
        """Begin tracking a method (once; later waves of the same method only advance it)."""
        if method in self.state:
            self.state[method]["last"] = time.perf_counter()  # a new wave: the time between waves is not this method's
            return
        previous = list(done)
        state = {"n": 0, "sum": 0.0, "invalid": 0, "total": total, "busy": 0.0, "last": time.perf_counter(), "resumed": len(previous)}
        self.state[method] = state
        for record in previous:
            self._count(state, record)
        if self.live:
            state["task"] = self.progress.add_task(
                "", total=total, completed=int(state["n"]), method=method, ndcg=self._ndcg(state), invalid=state["invalid"]
            )
        elif self.enabled:
            self.console.print(f"{method}: {total} users, {state['n']} already done")

    @staticmethod
    def _count(state: dict[str, Any], record: UserResult) -> None:
        state["n"] += 1
        state["invalid"] += not record.valid
        if record.rank is not None and record.rank < 10:
            state["sum"] += 1.0 / np.log2(record.rank + 2.0)

    @staticmethod
    def _ndcg(state: dict[str, Any]) -> float:
        return state["sum"] / state["n"] if state["n"] else 0.0

    def advance(self, method: str, records: Sequence[UserResult]) -> None:
        state = self.state[method]
        now = time.perf_counter()
        state["busy"] += now - state["last"]
        state["last"] = now
        for record in records:
            self._count(state, record)
        if self.live:
            task: TaskID = state["task"]
            self.progress.update(task, advance=len(records), ndcg=self._ndcg(state), invalid=state["invalid"])
        elif self.enabled and (state["n"] % self.every < len(records) or state["n"] == state["total"]):
            new = state["n"] - state["resumed"]
            rate = state["busy"] / max(new, 1)
            left = (state["total"] - state["n"]) * rate
            self.console.print(
                f"{method}: {state['n']}/{state['total']} NDCG@10 {self._ndcg(state):.4f} invalid {state['invalid']} "
                f"({rate:.1f} s/user, ~{left / 60:.0f} min left)"
            )


# --- the run -----------------------------------------------------------------------------


def _remote(spec: str) -> bool:
    return spec.startswith("openai")


def run_eval(config: EvalConfig, run_dir: Path, **options: Any) -> dict[str, Any]:
    """Run (or continue) the evaluation in `run_dir`, holding its lock; see `_run_eval`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        return _run_eval(config, run_dir, **options)


class _Session:
    """One `eval run` start in a run folder: its number in sessions.jsonl, and where each new
    per-user line goes (the store, the progress bars, `on_user`)."""

    def __init__(self, run_dir: Path, store: ResultStore, on_user: Callable[[UserResult], None] | None) -> None:
        self.run_dir, self.store, self.on_user = run_dir, store, on_user
        self.number = 1 + sum(1 for line in read_jsonl(run_dir / SESSIONS) if "start" in line)
        started = {"start": time.time(), "pid": os.getpid(), "argv": sys.argv, "code": source_hash()}
        _append_line(run_dir / SESSIONS, {"session": self.number, **started, "git": git_commit(Path(__file__).resolve().parent)})

    def save(self, tracker: Tracker, method: str, records: Sequence[UserResult]) -> None:
        stamped = [r.model_copy(update={"session": self.number, "t": time.time()}) for r in records]
        self.store.append(stamped)
        tracker.advance(method, stamped)
        if self.on_user is not None:
            for record in stamped:
                self.on_user(record)

    def end(self) -> None:
        _append_line(self.run_dir / SESSIONS, {"session": self.number, "end": time.time()})


def _open_folder(run_dir: Path, config: EvalConfig, restart: bool, config_text: tuple[str, str] | None) -> None:
    """The run folder with the configuration written (its results dropped first on `restart`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if restart:
        for name in ("users.jsonl", RESULTS, SESSIONS):
            (run_dir / name).unlink(missing_ok=True)
    if config_text is not None:
        suffix, text = config_text
        (run_dir / f"config{suffix}").write_text(text, encoding="utf-8")
    write_json(run_dir / CONFIG, config.model_dump(mode="json"))


def _chosen(config: EvalConfig, only: Sequence[str] | None) -> list[Method]:
    unknown = sorted(set(only or ()) - {m.name for m in config.methods})
    if unknown:
        raise ValueError(f"unknown methods {unknown}; the config has {[m.name for m in config.methods]}")
    return [m for m in config.methods if only is None or m.name in only]


def _prepare(config: EvalConfig, methods: Sequence[Method], data_dir: Path, say: Callable[[str], None]) -> None:
    """What the chosen methods read: their runs trained, then the agents' learned parts fit on
    validation users (before set_threads: training wants every core)."""
    needed = set().union(*(m.reads for m in methods))
    prepare_runs({path: spec for path, spec in config.runs.items() if path in needed}, data_dir, say)
    for method in methods:
        if isinstance(method, AgentMethod):
            fit_missing(method.run, method.variants, method.fitted, say, data_dir)


def _pending(
    methods: Sequence[Method], store: ResultStore, fingerprints: dict[str, str], users: Sequence[str], retry_errors: bool
) -> dict[str, list[str]]:
    """Each method's users without a line under its fingerprint (with `retry_errors`, also those
    whose call failed)."""
    pending: dict[str, list[str]] = {}
    for method in methods:
        fp = fingerprints[method.name]
        done = store.done(method.name, fp)
        failed = [u for u, r in done.items() if r.error and not r.error.startswith("invalid list")] if retry_errors else []
        if failed:
            store.drop(method.name, fp, failed)
            done = store.done(method.name, fp)
        pending[method.name] = [u for u in users if u not in done]
    return pending


def _waves(users: Sequence[str], size: int | None, methods: Sequence[Method], pending: dict[str, list[str]]) -> list[Wave]:
    """Each wave's pending users per method: a wave is `size` users of the sample (default:
    all), which every method finishes before the next wave starts."""
    size = size or max(len(users), 1)
    waves = []
    for begin in range(0, len(users), size):
        members = set(users[begin : begin + size])
        waves.append([(m, [u for u in pending[m.name] if u in members]) for m in methods])
    return waves


def _run_eval(
    config: EvalConfig,
    run_dir: Path,
    *,
    llm: LLM | None = None,
    concurrency: int | None = None,
    only: Sequence[str] | None = None,
    restart: bool = False,
    retry_errors: bool = False,
    progress: bool = True,
    console: Console | None = None,
    config_text: tuple[str, str] | None = None,
    data_dir: Path | None = None,
    on_user: Callable[[UserResult], None] | None = None,
    ray: RayTarget | None = None,
    prices: TokenPrices | None = None,
) -> dict[str, Any]:
    """Run (or continue) the evaluation in `run_dir`; returns what results.json holds.

    `llm` replaces the one the config names (tests); it is wrapped in the run's reply cache
    either way. `concurrency` users run in parallel for a remote LLM (default: the config's;
    the embedded model and an injected one run one user at a time). `only` restricts the run
    to some methods. `restart` discards the per-user results (the LLM cache stays, so a
    restarted run costs no LLM call); `retry_errors` recomputes users whose call failed.
    `on_user` sees every new line (tests use it to stop a run midway). `ray` computes the
    users on Ray workers (eval.ray_run): the same lines, journalled as each block finishes,
    `concurrency` users in flight per worker. `prices` (default: the settings) make the
    cost estimate."""
    if ray is not None:
        if llm is not None:
            raise ValueError("an LLM object cannot be sent to Ray workers: name the LLM in the config instead")
        check_reachable(ray)  # before any training or loading: a wrong address fails at once
    console = console or Console(stderr=True)
    _open_folder(run_dir, config, restart, config_text)
    methods = _chosen(config, only)
    store = ResultStore(run_dir)
    session = _Session(run_dir, store, on_user)
    data_dir = (data_dir or config.data_dir or PathSettings().data_dir).resolve()
    _prepare(config, methods, data_dir, console.print)
    set_threads()
    ctx = Context(config, data_dir=data_dir)
    if store.torn:
        console.print(f"[yellow]{store.torn} torn line(s) in users.jsonl dropped; those users run again[/]")

    # once per run: a fingerprint hashes the fitted files its method reads
    fingerprints = {m.name: config.fingerprint(m) for m in config.methods}
    pending = _pending(methods, store, fingerprints, ctx.users, retry_errors)
    settings = AgentSettings().model_copy(update={"llm_cache_dir": None})
    cached: CachedLLM | None = None
    if ray is None and any(pending[m.name] and m.uses_llm for m in methods):
        cached = CachedLLM(llm if llm is not None else make_llm(config.llm, settings), run_dir / CACHE_DIR)
    slots = concurrency if concurrency is not None else (config.concurrency if llm is None and _remote(config.llm) else 1)
    write_json(run_dir / VERSIONS, versions(cached.name if cached else None))
    results = partial(build_results, config, run_dir, ctx.users, store, config.methods, fingerprints, prices or TokenPrices())
    waves = _waves(ctx.users, config.wave, methods, pending)

    with Tracker(console, enabled=progress) as tracker:

        def start(method: Method) -> None:
            tracker.start(method.name, len(ctx.users), store.done(method.name, fingerprints[method.name]).values())

        save = partial(session.save, tracker)
        if ray is None:
            worker = Worker(ctx, fingerprints, lambda: cached if cached is not None else NoLLM())
            for wave in waves:
                for method, todo in wave:
                    start(method)
                    if todo:
                        worker.compute(method, todo, partial(save, method.name), slots)
                        write_json(run_dir / RESULTS, results())
        else:
            job = EvalJob(
                config=config,
                data_dir=data_dir,
                cache_dir=(run_dir / CACHE_DIR).resolve(),
                cwd=Path.cwd(),
                fingerprints=fingerprints,
                settings=settings,
            )
            named = False
            with ray_fanout(ray, job, slots) as run_wave:
                for wave in waves:
                    for method, _ in wave:
                        start(method)
                    for name, out in run_wave([(m, todo) for m, todo in wave if todo]):
                        save(name, out.records)
                        if out.llm is not None and not named:  # the workers built the LLM: its name for the provenance
                            write_json(run_dir / VERSIONS, versions(out.llm))
                            named = True
                    write_json(run_dir / RESULTS, results())

    session.end()
    final = results()
    write_json(run_dir / RESULTS, final)
    return final


def clear_run(run_dir: Path, keep_cache: bool = True) -> None:
    """Remove a run's results (and its LLM cache unless `keep_cache`)."""
    for name in ("users.jsonl", RESULTS, SESSIONS, CONFIG, VERSIONS):
        (run_dir / name).unlink(missing_ok=True)
    if not keep_cache:
        shutil.rmtree(run_dir / CACHE_DIR, ignore_errors=True)
