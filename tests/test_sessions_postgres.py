"""Sessions in Postgres shared by several server processes, against a real PostgreSQL that this
file starts with initdb in a temporary folder on loopback (as the `postgres` user when run as
root: initdb refuses root). Two real `toolrec serve` processes share one database URL, one of
them with two workers: one session's turns go to different processes and keep its constraints;
turns of one session sent at the same moment to two processes are all stored, one after the
other. The advisory turn lock is also checked directly. Where PostgreSQL or the postgres extra is
missing, those tests skip and say why; the import check and the SQLite refusal run anyway."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

REPO = Path(__file__).resolve().parent.parent
START_S = 180.0  # two servers, one of them with two workers, loading on a shared 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or in Debian's versioned folder (not on PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own on a free loopback port, for this test session."""
    pytest.importorskip("langgraph.checkpoint.postgres", reason="the postgres extra is not installed (pip install -e '.[postgres]')")
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql when run as root)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="toolrec-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: the cluster is the postgres user's
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no postgres user to run initdb as")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120, check=False)

    init = run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "toolrec", "-E", "UTF8", "--locale=C", "--no-sync")
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    start = run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start")
    if init.returncode or start.returncode:
        log = (root / "log").read_text(errors="replace")[-2000:] if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL could not start here: {init.stderr[-500:]}{start.stderr[-500:]}{log}")
    try:
        yield f"postgresql://toolrec@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


# --- the lock, directly ------------------------------------------------------------------------


def test_a_sessions_turn_lock_holds_across_stores_and_bounds_the_wait(postgres_url: str) -> None:
    """Two stores (two pools, as two processes would have): while one holds a session's lock the
    other waits for it, not for another session's, and gives up with SessionBusy past its wait."""
    from agent.chat.postgres import postgres_store
    from agent.chat.store import SessionBusy

    first = postgres_store(postgres_url, connections=2, lock_timeout_s=30)
    second = postgres_store(postgres_url, connections=2, lock_timeout_s=30)
    impatient = postgres_store(postgres_url, connections=1, lock_timeout_s=0.2)
    entered = threading.Event()

    def take() -> None:
        with second.locks.hold("s-lock"):
            entered.set()

    try:
        with first.locks.hold("s-lock"):
            waiter = threading.Thread(target=take)
            waiter.start()
            with second.locks.hold("s-other"):  # another session is not held up
                pass
            with pytest.raises(SessionBusy, match="busy"):
                with impatient.locks.hold("s-lock"):
                    pass
            assert not entered.wait(0.5), "the lock let a second turn of the session in"
        assert entered.wait(10), "the waiting turn did not go on once the lock was released"
        waiter.join()
    finally:
        for store in (first, second, impatient):
            store.close()


# --- two real servers ------------------------------------------------------------------------


def serve(run: Path, data_dir: Path, url: str, port: int, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    toolrec = Path(sys.executable).with_name("toolrec")
    command = [str(toolrec), "serve", "--run", str(run), "--llm", "none", "--k", "5", "--port", str(port), "--sessions", url]
    command += ["--workers", str(workers), "--rate-per-minute", "1000000", "--max-concurrency", "2"]
    env = {**os.environ, "TOOLREC_DATA_DIR": str(data_dir), "TOOLREC_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)  # uvicorn's parent stops its workers on it
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def servers(
    toolbox: Toolbox, tool_runs: dict[str, Path], data_dir: Path, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """`toolrec serve --workers 2` and a single `toolrec serve` on one fresh database, which the
    three processes set up at once (the toolbox fixture saves the run's item index first)."""
    import psycopg

    database = f"serve_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {database}")
    url = f"{postgres_url.rsplit('/', 1)[0]}/{database}"
    logs = tmp_path_factory.mktemp("serve-logs")
    ports = free_port(), free_port()
    processes = [
        serve(tool_runs["plain"], data_dir, url, ports[0], logs / "a.log", workers=2),
        serve(tool_runs["plain"], data_dir, url, ports[1], logs / "b.log"),
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + START_S
        for url, process, name in zip(urls, processes, ("a", "b"), strict=True):
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).json()["sessions"] == "postgres":
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"toolrec serve did not start:\n{(logs / f'{name}.log').read_text(errors='replace')[-3000:]}")
                time.sleep(0.5)
        yield urls[0], urls[1]
    finally:
        for process in processes:
            stop(process)


def chat(url: str, session: str, message: str, user: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": message}], "user": session}
    if user is not None:
        body["toolrec_user_id"] = user
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["toolrec"]


def stored(url: str, session: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/v1/sessions/{session}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_one_session_across_two_servers_keeps_its_constraints(servers: tuple[str, str], toolbox: Toolbox) -> None:
    a, b = servers
    session = f"across-{uuid.uuid4().hex[:8]}"
    first = chat(a, session, "no horror", user="1")
    second = chat(b, session, "older films")
    third = chat(a, session, "no comedy")
    assert [first["turn"], second["turn"], third["turn"]] == [1, 2, 3]
    assert second["constraints"]["exclude_genres"] == ["Horror"] and second["constraints"]["year_to"] is not None
    assert set(third["constraints"]["exclude_genres"]) == {"Horror", "Comedy"} and third["constraints"]["year_to"] is not None
    for turn, banned in ((second, {"Horror"}), (third, {"Horror", "Comedy"})):
        assert turn["items"] and all(not banned & set(item["genres"]) for item in turn["items"])
    shown = [item["id"] for turn in (first, second, third) for item in turn["items"]]
    assert len(shown) == len(set(shown))  # what one server showed, the other knew
    state = stored(b, session)
    assert state["user_id"] == "1" and [t["message"] for t in state["turns"]] == ["no horror", "older films", "no comedy"]


def test_turns_sent_at_once_to_two_servers_are_all_stored_in_order(servers: tuple[str, str]) -> None:
    """Pairs of turns of one session, each pair sent at the same moment to the two servers:
    every turn is stored (none overwrites the other's state), in the order of the turn numbers
    the servers answered with, and every exclusion asked for stands at the end."""
    a, b = servers
    session = f"race-{uuid.uuid4().hex[:8]}"
    chat(a, session, "what should I watch next?", user="2")
    pairs = [("no horror", "no western"), ("no musical", "no documentary"), ("no war", "no animation")]
    gate = threading.Barrier(2)

    def send(url: str, message: str) -> tuple[str, dict[str, Any]]:
        gate.wait()
        return message, chat(url, session, message)

    answered: dict[int, tuple[str, dict[str, Any]]] = {}
    with ThreadPoolExecutor(2) as pool:
        for pair in pairs:
            for message, turn in pool.map(send, (a, b), pair):
                answered[turn["turn"]] = (message, turn)
    assert sorted(answered) == list(range(2, 2 + 2 * len(pairs)))  # each turn its own number
    state = stored(b, session)
    assert state["turn_count"] == 1 + 2 * len(pairs)
    assert [t["message"] for t in state["turns"]] == ["what should I watch next?", *(answered[n][0] for n in sorted(answered))]
    excluded = [set(answered[n][1]["constraints"]["exclude_genres"]) for n in sorted(answered)]
    assert all(before < after for before, after in zip(excluded, excluded[1:], strict=False))  # each turn saw the one before
    assert set(state["constraints"]["exclude_genres"]) == {"Horror", "Western", "Musical", "Documentary", "War", "Animation"}


def test_the_load_test_runs_against_a_server_started_apart(servers: tuple[str, str], toolbox: Toolbox) -> None:
    """`toolrec bench serve --url`: sessions against the two-worker server, each checked afterwards
    against what it alone said, with what the server says of itself."""
    from agent.cli.bench import BenchError, bench_server

    report = bench_server(servers[0], toolbox, sessions=4, turns=3, concurrency=4, max_seconds=120)
    assert report["session_store"] == "postgres" and report["llm"] == "none"
    assert report["requests"] == 12 and report["errors"] == 0 and report["isolation_violations"] == 0, report["problems"]
    with pytest.raises(BenchError, match="no toolrec server answers"):
        bench_server(f"http://127.0.0.1:{free_port()}", toolbox, sessions=1, turns=1)


# --- without Postgres ------------------------------------------------------------------------


def test_nothing_imports_psycopg_unless_asked_for() -> None:
    """The server, the command line and SQLite sessions leave the postgres extra unimported."""
    code = (
        "import sys, eval.cli, agent.serve.app, agent.serve.workers\n"
        "from agent.chat import Conversation\n"
        "from agent.chat.store import sqlite_store\n"
        "sqlite_store(None).close()\n"
        "extra = ('psycopg', 'psycopg_pool', 'langgraph.checkpoint.postgres')\n"
        "print(sorted(m for m in sys.modules if m.startswith(extra)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_several_workers_with_sqlite_are_refused_with_the_reason(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from eval.cli import app

    result = CliRunner().invoke(app, ["serve", "--run", str(tmp_path), "--workers", "2", "--sessions", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "--workers 2 needs --sessions postgresql://" in said and "turn lock" in said
