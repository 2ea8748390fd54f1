"""`eval run` on Ray against the same run in one process, on ML-100K backbones (the `tool_runs`
fixture) with an LLM behind a real loopback OpenAI-compatible server that answers after a
delay (eval.delayed_llm): a local Ray of two workers gives the same lines user by user, keeps
at most `concurrency` users in flight per worker, and a run killed mid-way resumes from its
journal to the same figures. Also: retries on a server that answers 429 twice, the cost
estimate, a wrong Ray address, and that nothing imports Ray unless asked for."""

from __future__ import annotations

import importlib.util
import json
import operator
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_eval_run import figures, outcome, per_user
from typer.testing import CliRunner

from agent.serve.app import running
from eval.cli import app
from eval.config import EvalConfig
from eval.delayed_llm import create_app
from eval.distributed import RayTarget, WorkerFailed, WorkerPool, connect, split
from eval.report import write_report
from eval.runner import run_eval
from eval.store import USERS_FILE

pytest_plugins = ["fixtures_tools"]

REPO = Path(__file__).resolve().parent.parent
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install '.[ray]'; scripts/test.sh installs it)"
)
USERS = 10
DELAY_S = 0.1


def scale_config(runs: dict[str, Path], data_dir: Path, users: int = USERS) -> EvalConfig:
    """Ranking methods, an agent without the LLM, and the two LLM planners through the server."""
    agent = {"kind": "agent", "run": str(runs["plain"]), "assembly": "fused", "tools": ["retrieve"]}
    methods: list[dict[str, Any]] = [
        {"name": "popularity", "kind": "popularity"},
        {"name": "sasrec", "kind": "backbone", "run": str(runs["plain"])},
        {**agent, "name": "agent-menu-uniform", "max_rounds": 1, "menu_choice": "uniform", "variants": {"genre": str(runs["genre"])}},
        {**agent, "name": "agent-menu-llm", "max_rounds": 1, "menu_choice": "llm"},
        {**agent, "name": "agent-tools", "max_rounds": 2, "planner": "tools"},
    ]
    return EvalConfig.model_validate(
        {
            "name": "ray",
            "dataset": "ml-100k",
            "users": users,
            "seed": 3,
            "data_dir": str(data_dir),
            "llm": "openai:delayed",
            "methods": methods,
        }
    )


@pytest.fixture(scope="module")
def llm_server() -> Iterator[str]:
    with running(create_app(DELAY_S)) as url:
        yield url


@pytest.fixture
def llm_env(llm_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TOOLREC_OPENAI_BASE_URL", f"{llm_server}/v1")
    monkeypatch.setenv("TOOLREC_OPENAI_API_KEY", "test")
    return llm_server


def stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/stats", timeout=5).json()


@pytest.fixture(scope="module")
def in_process(tool_runs: dict[str, Path], data_dir: Path, llm_server: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the run in this process, four users in flight."""
    run_dir = tmp_path_factory.mktemp("in-process")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOOLREC_OPENAI_BASE_URL", f"{llm_server}/v1")
        patch.setenv("TOOLREC_OPENAI_API_KEY", "test")
        results = run_eval(scale_config(tool_runs, data_dir), run_dir, concurrency=4, progress=False)
    assert results["complete"] and all(v["invalid"] == 0 for v in results["methods"].values())
    assert results["methods"]["agent-menu-llm"]["cost"]["llm_calls"] == USERS  # one scoring each (of two orderings)
    assert results["methods"]["agent-tools"]["cost"]["llm_calls"] == 2 * USERS  # two plan rounds each
    return run_dir


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray of two workers on loopback, shared by the module's runs (and joined by a
    separate process in the kill test)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install '.[ray]'; scripts/test.sh installs it)")
    with connect(RayTarget(address="auto", workers=2)):
        import ray

        yield ray.get_runtime_context().gcs_address


def same_lines(run_dir: Path, reference: Path) -> None:
    got, expected = per_user(run_dir), per_user(reference)
    assert got.keys() == expected.keys()
    assert {k: outcome(v) for k, v in got.items()} == {k: outcome(v) for k, v in expected.items()}


@needs_ray
def test_ray_gives_the_in_process_lines_and_caps_users_per_worker(
    in_process: Path, ray_address: str, llm_env: str, tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    assert ray_address.startswith("127.0.0.1:")  # a local Ray stays on loopback
    before = stats(llm_env)
    results = run_eval(scale_config(tool_runs, data_dir), tmp_path, ray=RayTarget(address=ray_address), concurrency=2, progress=False)
    same_lines(tmp_path, in_process)
    assert figures(results) == figures(json.loads((in_process / "results.json").read_text()))
    seen = stats(llm_env)
    assert seen["requests"] - before["requests"] == 4 * USERS  # two orderings and two plan rounds a user: none twice, none lost
    assert 1 < seen["peak_in_flight"] <= 2 * 2  # two workers, two users each
    versions = json.loads((tmp_path / "versions.json").read_text())
    assert versions["llm"] == "openai:delayed"  # named by the workers that built it
    write_report(tmp_path, n_boot=50)
    assert "## Cost" in (tmp_path / "report.md").read_text()


@needs_ray
def test_a_killed_ray_run_resumes_from_its_journal(
    in_process: Path, ray_address: str, llm_env: str, tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    config_path = tmp_path / "ray.yaml"  # JSON is YAML
    config_path.write_text(json.dumps(scale_config(tool_runs, data_dir).model_dump(mode="json")))
    run_dir = tmp_path / "run"
    journal = run_dir / USERS_FILE
    command = [
        sys.executable,
        "-c",
        "from eval.cli import app; app()",
        "eval",
        "run",
        str(config_path),
        "--out",
        str(run_dir),
        "--no-progress",
    ]
    command += ["--ray", ray_address, "--concurrency", "1"]
    process = subprocess.Popen(command, cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ranked = 2 * USERS  # popularity and SASRec come first, in one block each
    deadline = time.monotonic() + 120
    lines = 0
    while process.poll() is None and time.monotonic() < deadline:
        lines = len(journal.read_bytes().splitlines()) if journal.exists() else 0
        if lines > ranked + 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before it could be killed: {process.stdout.read().decode()[-2000:]}"  # type: ignore[union-attr]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed_at = len(journal.read_bytes().splitlines())
    assert ranked < killed_at < 5 * USERS, "the kill landed mid-run"

    results = run_eval(scale_config(tool_runs, data_dir), run_dir, ray=RayTarget(address=ray_address), concurrency=2, progress=False)
    assert results["complete"]
    same_lines(run_dir, in_process)  # no line twice, none lost, each the same as in one process
    assert figures(results) == figures(json.loads((in_process / "results.json").read_text()))
    sessions = [json.loads(line) for line in (run_dir / "sessions.jsonl").read_text().splitlines()]
    assert [s["session"] for s in sessions if "start" in s] == [1, 2]
    assert {r.session for r in per_user(run_dir).values()} == {1, 2}


@needs_ray
def test_the_worker_pool_keeps_block_order_and_reports_a_worker_that_cannot_open(ray_address: str) -> None:
    with connect(RayTarget(address=ray_address)) as workers:
        assert workers == 2
        blocks = split(list(range(23)), 4)
        assert [len(b) for b in blocks] == [4, 4, 4, 4, 4, 3]
        with WorkerPool(list, workers, per_worker=3) as pool:
            assert pool.map(operator.add, blocks) == blocks  # [] + block, in block order
            assert sorted(i for i, _ in pool.run(operator.add, blocks)) == list(range(len(blocks)))
        with WorkerPool(partial(int, "not a number"), 1) as pool, pytest.raises(WorkerFailed, match="not a number"):
            pool.map(operator.add, blocks)
    with pytest.raises(ValueError):
        split([1], 0)


def test_retries_a_server_that_answers_429_twice_and_estimates_the_cost(
    tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real client's backoff against a real server, through a whole run: the two 429s cost
    two retries and no user. The estimate is the tokens at the prices set."""
    monkeypatch.setenv("TOOLREC_LLM_INPUT_USD_PER_MTOK", "2.5")
    monkeypatch.setenv("TOOLREC_LLM_OUTPUT_USD_PER_MTOK", "10")
    config = scale_config(tool_runs, data_dir, users=3)
    config.methods = [m for m in config.methods if m.name == "agent-tools"]
    with running(create_app(0.0, fail_first=2)) as url:
        monkeypatch.setenv("TOOLREC_OPENAI_BASE_URL", f"{url}/v1")
        results = run_eval(config, tmp_path, progress=False)
        seen = stats(url)
    cost = results["methods"]["agent-tools"]["cost"]
    assert results["methods"]["agent-tools"]["invalid"] == 0 and cost["llm_calls"] == 6
    assert seen["rate_limited"] == 2 and seen["requests"] == 6 + 2
    assert cost["usd"] == pytest.approx((cost["prompt_tokens"] * 2.5 + cost["completion_tokens"] * 10) / 1e6) and cost["usd"] > 0
    assert results["usd"] == cost["usd"] and results["prices"]["llm_output_usd_per_mtok"] == 10
    write_report(tmp_path, n_boot=50)
    report = (tmp_path / "report.md").read_text()
    assert "Estimated cost at $2.5 per million prompt tokens" in report and "est. USD" in report


def test_a_wrong_ray_address_is_a_clear_error(tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    config_path = tmp_path / "c.yaml"
    config_path.write_text(json.dumps(scale_config(tool_runs, data_dir).model_dump(mode="json")))
    for address, said in (("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1"), ("nowhere", "HOST:PORT")):
        result = CliRunner().invoke(app, ["eval", "run", str(config_path), "--out", str(tmp_path / "run"), "--ray", address])
        assert result.exit_code == 1 and said in result.output, result.output


def test_nothing_imports_ray_unless_asked(tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    """The command line, the runner and the Ray glue itself load without Ray; so does a run
    in one process."""
    config = scale_config(tool_runs, data_dir, users=3)
    config.methods = config.methods[:2]  # popularity and SASRec: no LLM
    config_path = tmp_path / "c.yaml"
    config_path.write_text(json.dumps(config.model_dump(mode="json")))
    code = (
        "import sys\n"
        "import eval.cli, eval.runner, eval.ray_run, eval.distributed, eval.delayed_llm\n"
        "from typer.testing import CliRunner\n"
        f"done = CliRunner().invoke(eval.cli.app, ['eval', 'run', {str(config_path)!r}, '--out', {str(tmp_path / 'run')!r}])\n"
        "assert done.exit_code == 0, done.output\n"
        "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["complete"]
