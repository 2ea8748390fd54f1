"""A small evaluation run with the real embedded model on ML-100K: every list is valid and
scored, costs are accounted, and a restarted run is served from the run's LLM cache.
Needs the GGUF (`toolrec models get`); skipped when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.bench import CountingLLM
from agent.llm.base import LLM
from agent.llm.embedded import load_embedded
from agent.settings import AgentSettings
from eval.config import EvalConfig
from eval.report import write_report
from eval.runner import run_eval

pytest_plugins = ["fixtures_tools"]
pytestmark = pytest.mark.llm

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def embedded() -> LLM:
    path = AgentSettings().resolved_embedded_model_path()
    if not path.is_absolute():
        path = REPO / path
    if not path.is_file():
        pytest.skip(f"embedded model not fetched ({path}); run `toolrec models get`")
    return load_embedded(path, n_threads=2, n_ctx=4096)


def test_embedded_model_small_run(embedded: LLM, tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    config = EvalConfig.model_validate(
        {
            "name": "embedded",
            "dataset": "ml-100k",
            "users": 2,
            "seed": 2023,
            "data_dir": str(data_dir),
            "backbone": "sasrec",
            "methods": [
                {"name": "sasrec", "kind": "backbone", "run": str(tool_runs["plain"])},
                {"name": "agent", "kind": "agent", "run": str(tool_runs["plain"]), "max_rounds": 1, "tools": ["retrieve"]},
                {"name": "llm-rerank", "kind": "llm_rerank", "run": str(tool_runs["plain"]), "top_n": 5, "history": 3, "max_tokens": 48},
            ],
        }
    )
    first = CountingLLM(embedded)
    results = run_eval(config, tmp_path, llm=first, progress=False)
    assert results["complete"] and first.calls >= 4
    for name in ("agent", "llm-rerank"):
        v = results["methods"][name]
        assert v["scored"] == 2 and v["errors"] == 0 and v["invalid"] == 0, v["invalid_examples"]
        assert v["cost"]["llm_calls"] >= 2 and v["cost"]["tokens"] > 0 and v["cost"]["llm_call_p50"] > 0
    again = CountingLLM(embedded)
    rerun = run_eval(config, tmp_path, llm=again, progress=False, restart=True)
    assert again.calls == 0
    assert {n: v["metrics"] for n, v in rerun["methods"].items()} == {n: v["metrics"] for n, v in results["methods"].items()}
    write_report(tmp_path, n_boot=200)
    assert (tmp_path / "report.md").read_text().count("| agent |") >= 2
