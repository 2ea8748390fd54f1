"""Evaluation runs on real ML-100K backbones (the `tool_runs` fixture) with a scripted LLM and
a deterministic rule-based one: figures agree with an independent computation, a killed run
resumes to exactly the uninterrupted result, a cached rerun makes no LLM call, an invalid or
failed output scores zero and is counted, and the report's files are written and parse."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from agent.llm.base import ChatMessage, LLMError, LLMReply
from agent.llm.scripted import ScriptedLLM
from agent.recommend import Agent
from agent.state import Recommendation, RecommendedItem
from eval.backbone import backbone_ranks
from eval.cli import app
from eval.config import AgentMethod, EvalConfig, load_config
from eval.methods import Context
from eval.metrics import MISSING, summarise
from eval.report import write_report
from eval.runner import RunLocked, StopRun, run_eval, run_lock
from eval.store import USERS_FILE, UserResult
from tools.data.sequences import SequenceDataset
from tools.models.checkpoint import load_model

pytest_plugins = ["fixtures_tools"]

FINISH = '{"name": "finish", "arguments": {}}'
REPO = Path(__file__).resolve().parent.parent


class RuleLLM:
    """A deterministic LLM whose reply depends only on the prompt, so that an interrupted run
    and an uninterrupted one see the same replies: it retrieves the user's top genre, then
    finishes; asked to rank candidates, it puts them in reverse order. Counts its calls."""

    name = "rule"

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, messages: Sequence[ChatMessage], **_: Any) -> LLMReply:
        self.calls += 1
        last = messages[-1].content
        if "Candidate" in last:
            n = len(re.findall(r"^\d+\. ", last, re.M))
            text = json.dumps({"items": list(range(n, 0, -1))})
        elif "returned:" in last:
            text = FINISH
        else:
            top = re.search(r"watch most: ([^(\n]+) \(", last)
            genre = top.group(1).strip() if top else "Drama"
            text = json.dumps({"name": "retrieve", "arguments": {"genres": [genre], "k": 10}})
        return LLMReply(text=text, prompt_tokens=len(last.split()), completion_tokens=len(text.split()), seconds=0.25, model=self.name)


def make_config(runs: dict[str, Path], data_dir: Path, users: int = 6, **extra: Any) -> EvalConfig:
    methods: list[dict[str, Any]] = [
        {"name": "popularity", "kind": "popularity"},
        {"name": "sasrec", "kind": "backbone", "run": str(runs["plain"])},
        {"name": "sasrec-genre", "kind": "backbone", "run": str(runs["genre"])},
        {
            "name": "agent",
            "kind": "agent",
            "run": str(runs["plain"]),
            "variants": {"genre": str(runs["genre"])},
            "max_rounds": 2,
            "tools": ["retrieve"],
            "planner": "tools",  # the scripted replies are free tool calls
            "versus": ["agent-no-llm"],  # the LLM's own gain
        },
        {"name": "agent-no-llm", "kind": "agent", "run": str(runs["plain"]), "max_rounds": 0, "tools": ["retrieve"]},
        {
            "name": "agent-llm-order",
            "kind": "agent",
            "run": str(runs["plain"]),
            "max_rounds": 1,
            "tools": ["retrieve"],
            "assembly": "llm",
            "planner": "tools",
        },
        {"name": "llm-rerank", "kind": "llm_rerank", "run": str(runs["plain"]), "top_n": 10},
    ]
    return EvalConfig.model_validate(
        {"name": "test", "dataset": "ml-100k", "users": users, "seed": 7, "data_dir": str(data_dir), "methods": methods, **extra}
    )


def per_user(run_dir: Path) -> dict[tuple[str, str], UserResult]:
    lines = [UserResult.model_validate_json(line) for line in (run_dir / USERS_FILE).read_text().splitlines()]
    keys = [(r.method, r.user) for r in lines]
    assert len(keys) == len(set(keys)), "a (method, user) pair was written twice"
    return {(r.method, r.user): r for r in lines}


def outcome(record: UserResult) -> tuple[Any, ...]:
    return (
        record.rank,
        record.valid,
        record.error,
        record.items,
        record.llm_calls,
        record.prompt_tokens,
        record.completion_tokens,
        record.fallback,
        record.backfilled,
    )


def figures(results: dict[str, Any]) -> dict[str, Any]:
    """Everything in results.json except timings."""
    out = {}
    for name, v in results["methods"].items():
        cost = {
            k: c for k, c in v["cost"].items() if "latency" not in k and "seconds" not in k and "call_p" not in k and k != "cached_calls"
        }
        out[name] = {**{k: v[k] for k in ("scored", "invalid", "errors", "fallbacks", "backfilled_items", "metrics")}, "cost": cost}
    return out


@pytest.fixture(scope="module")
def reference(tool_runs: dict[str, Path], data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], RuleLLM]:
    """One uninterrupted run with the rule LLM."""
    run_dir = tmp_path_factory.mktemp("eval-reference")
    llm = RuleLLM()
    results = run_eval(make_config(tool_runs, data_dir), run_dir, llm=llm, progress=False)
    return run_dir, results, llm


def test_a_run_scores_every_method_on_the_same_users(
    reference: tuple[Path, dict[str, Any], RuleLLM], tool_runs: dict[str, Path], ml100k: SequenceDataset
) -> None:
    run_dir, results, llm = reference
    users = results["user_ids"]
    assert len(users) == 6 and results["complete"]
    lines = per_user(run_dir)
    assert len(lines) == 7 * 6
    for name, v in results["methods"].items():
        assert v["scored"] == 6 and v["invalid"] == 0 and v["pending"] == 0, name
        assert set(v["metrics"]) >= {f"{m}@{k}" for m in ("recall", "hr", "ndcg", "mrr") for k in (1, 5, 10, 20)}

    # the backbone's figures are those of an independent full-ranking computation
    rows = [ml100k.user_index[u] for u in users]
    expected = backbone_ranks(load_model(tool_runs["plain"], ml100k), ml100k, "test", users=rows)
    got = np.array([lines[("sasrec", u)].rank if lines[("sasrec", u)].rank is not None else MISSING for u in users])
    assert np.array_equal(got, expected)
    assert results["methods"]["sasrec"]["metrics"] == pytest.approx(summarise(expected))

    # the agent's machinery without its LLM is the backbone, cut at 20
    no_llm = [lines[("agent-no-llm", u)] for u in users]
    assert all(r.llm_calls == 0 and len(r.items or []) == 20 for r in no_llm)
    assert [r.rank for r in no_llm] == [int(e) if e < 20 else None for e in expected]

    # the agent called the LLM twice per user (a retrieve, then finish) and retrieved once
    agent = [lines[("agent", u)] for u in users]
    assert all(r.llm_calls == 2 and r.diagnostics["tools"] == ["retrieve"] for r in agent)
    cost = results["methods"]["agent"]["cost"]
    assert cost["llm_calls"] == 12 and cost["tokens"] == sum(r.prompt_tokens + r.completion_tokens for r in agent) > 0
    assert cost["llm_call_p50"] == pytest.approx(0.25)

    # the reranker reversed the backbone's top-10; the next 10 follow in backbone order
    for u in users:
        rerank, backbone = lines[("llm-rerank", u)].items, lines[("agent-no-llm", u)].items
        assert rerank is not None and backbone is not None
        assert rerank[:10] == backbone[:10][::-1] and rerank[10:] == backbone[10:]
    assert llm.calls == 6 * 2 + 6 * 2 + 6  # agent, agent-llm-order (plan + order), llm-rerank


def test_scripted_llm_small_run(tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    """The scripted model through the real graph: the replies land where the script says."""
    config = make_config(tool_runs, data_dir, users=2).model_copy()
    config.methods = [m for m in config.methods if m.name in ("sasrec", "agent-llm-order", "llm-rerank")]
    script = ScriptedLLM(
        [
            '{"name": "retrieve", "arguments": {"genres": ["Comedy"]}}',
            '{"items": [3, 1, 2]}',  # user 1, agent
            FINISH,
            "I cannot decide",
            "still nothing",  # user 2, agent
            '{"items": [2, 1]}',
            '{"items": [10, 9, 8]}',  # rerank users 1, 2
        ]
    )
    results = run_eval(config, tmp_path, llm=script, progress=False)
    assert script.remaining == 0
    lines = per_user(tmp_path)
    first, second = (lines[("agent-llm-order", u)] for u in results["user_ids"])
    assert first.diagnostics["tools"] == ["retrieve"] and not first.fallback and first.llm_calls == 2
    assert second.llm_calls == 3
    rerank = [lines[("llm-rerank", u)] for u in results["user_ids"]]
    assert [r.diagnostics["picked"] for r in rerank] == [2, 3] and not any(r.fallback for r in rerank)
    # an unusable final order (no JSON, even after the corrective retry) keeps the pool's order
    assert second.fallback and second.diagnostics["tools"] == []
    assert results["methods"]["agent-llm-order"]["fallbacks"] >= 1
    assert results["methods"]["agent-llm-order"]["invalid"] == 0


def test_kill_and_resume_gives_the_uninterrupted_result(
    reference: tuple[Path, dict[str, Any], RuleLLM], tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    ref_dir, ref_results, _ = reference
    # waves of 3 users: the interrupted run also checks that waves do not change any figure
    config = make_config(tool_runs, data_dir, wave=3)
    written = 0

    def kill_after_24(_: UserResult) -> None:
        nonlocal written
        written += 1
        if written == 24:  # the first wave (7 methods x 3 users), then popularity for the second
            raise StopRun

    with pytest.raises(StopRun):
        run_eval(config, tmp_path, llm=RuleLLM(), progress=False, on_user=kill_after_24)
    assert len(per_user(tmp_path)) == 24
    report = write_report(tmp_path, n_boot=100)
    # popularity has finished both waves; every other method is reported with it on the first wave
    assert not report["complete"] and list(report["methods"]) == ["popularity"] and report["reported_users"] == 6
    assert report["partial"]["users"] == 3 and len(report["partial"]["methods"]) == 7
    assert all(v["scored"] == 3 for v in report["partial"]["methods"].values())
    assert "Unfinished methods, on the 3 users" in (tmp_path / "report.md").read_text()

    # a kill in the middle of a line: the last line torn in half
    text = (tmp_path / USERS_FILE).read_text()
    (tmp_path / USERS_FILE).write_text(text + text.splitlines()[-1][:37])
    second = RuleLLM()
    results = run_eval(config, tmp_path, llm=second, progress=False)
    assert results["complete"]
    assert figures(results) == figures(ref_results)
    resumed, reference_lines = per_user(tmp_path), per_user(ref_dir)
    assert resumed.keys() == reference_lines.keys()
    assert all(outcome(resumed[key]) == outcome(reference_lines[key]) for key in resumed)
    # the resumed session only asked for what the first one had not finished: the second wave
    assert second.calls == 3 * 2 + 3 * 2 + 3
    sessions = [json.loads(line) for line in (tmp_path / "sessions.jsonl").read_text().splitlines()]
    assert [s["session"] for s in sessions if "start" in s] == [1, 2]
    # the wall time is both sessions', and the report says how it splits
    assert list(results["session_seconds"]) == ["1", "2"]
    assert results["wall_seconds"] == pytest.approx(sum(results["session_seconds"].values()), abs=0.11)
    write_report(tmp_path, n_boot=100)
    assert "over 2 sessions (the latest" in (tmp_path / "report.md").read_text()


def test_a_finished_or_cached_rerun_makes_no_llm_call(
    reference: tuple[Path, dict[str, Any], RuleLLM], tool_runs: dict[str, Path], data_dir: Path
) -> None:
    ref_dir, ref_results, _ = reference
    config = make_config(tool_runs, data_dir)
    again = RuleLLM()
    assert figures(run_eval(config, ref_dir, llm=again, progress=False)) == figures(ref_results)
    assert again.calls == 0  # nothing left to do
    restarted = RuleLLM()
    results = run_eval(config, ref_dir, llm=restarted, progress=False, restart=True)
    assert restarted.calls == 0  # every reply came from the run's LLM cache
    assert figures(results) == figures(ref_results)
    agent = results["methods"]["agent"]["cost"]
    assert agent["cached_calls"] == agent["llm_calls"] == 12
    assert agent["latency_p50"] >= 0.5  # cached calls count at their first-measured latency


def test_a_failed_user_scores_zero_and_is_counted(tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    config = make_config(tool_runs, data_dir, users=3)
    config.methods = [m for m in config.methods if m.name in ("sasrec", "agent")]
    # user 1: the backend fails (not a timeout, so the agent cannot fall back); users 2, 3 finish
    script = ScriptedLLM([LLMError("server unreachable"), FINISH, FINISH])
    results = run_eval(config, tmp_path, llm=script, progress=False)
    agent = results["methods"]["agent"]
    assert agent["scored"] == 3 and agent["invalid"] == 1 and agent["errors"] == 1
    assert "server unreachable" in agent["invalid_examples"][0]["error"]
    failed = per_user(tmp_path)[("agent", results["user_ids"][0])]
    assert failed.rank is None and not failed.valid
    # the failed user counts as zero in the mean over all three, never dropped
    lines = per_user(tmp_path)
    ranks = np.array([lines[("agent", u)].rank if lines[("agent", u)].rank is not None else MISSING for u in results["user_ids"]])
    assert agent["metrics"] == pytest.approx(summarise(ranks))
    # --retry-errors recomputes only the failed user
    retry = ScriptedLLM([FINISH])
    again = run_eval(config, tmp_path, llm=retry, progress=False, retry_errors=True)
    assert retry.remaining == 0 and again["methods"]["agent"]["invalid"] == 0
    assert len(per_user(tmp_path)) == 6


def test_an_invalid_list_scores_zero_and_is_counted(
    tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tool_runs, data_dir, users=3)
    config.methods = [m for m in config.methods if m.name == "agent-no-llm"]
    ctx = Context(config)
    user = ctx.users[0]
    target = ctx.item_id(ctx.targets[user])
    seen = ctx.item_id(int(ctx.histories[user][0]))

    def broken(self: Agent, request: Any) -> Recommendation:
        # the target first, then a history item and a duplicate: a hit that must not count
        ids = [target, seen, target] + [i.id for i in ctx.dataset.items[:40] if i.id not in (target, seen)][:17]
        items = [RecommendedItem(id=i, title=i, score=0.0, provenance=[], reason="") for i in ids]
        return Recommendation(user_id=request.user_id, k=20, items=items, backfilled=0, rounds=0, trace=[], seconds=0.0)

    monkeypatch.setattr(Agent, "recommend", broken)
    results = run_eval(config, tmp_path, progress=False)
    v = results["methods"]["agent-no-llm"]
    assert v["invalid"] == 3 and v["errors"] == 0 and v["scored"] == 3
    assert all(value == 0.0 for value in v["metrics"].values())
    assert "history items" in v["invalid_examples"][0]["error"] and "duplicates" in v["invalid_examples"][0]["error"]
    assert ctx.check_list(user, ["nope"]) is not None
    assert (
        ctx.check_list(user, [i.id for i in ctx.dataset.items if i.id not in {ctx.item_id(int(d)) for d in ctx.histories[user]}][:20])
        is None
    )


def test_report_files_are_written_and_parse(reference: tuple[Path, dict[str, Any], RuleLLM]) -> None:
    import matplotlib.image

    run_dir, results, _ = reference
    report = write_report(run_dir, n_boot=300)
    text = (run_dir / "report.md").read_text()
    assert "| Method | Users | Invalid |" in text and "Paired test against sasrec" in text
    for name in results["methods"]:
        assert re.search(rf"^\| {re.escape(name)} \| 6 \| 0 \|", text, re.M), name
    assert "## Versions" in text and '"torch"' in text and "## Configuration" in text
    parsed = json.loads((run_dir / "report.json").read_text())
    assert parsed["methods"]["agent"]["paired"]["users"] == 6
    lo, hi = parsed["methods"]["sasrec"]["ci"]["ndcg@10"]
    assert lo <= parsed["methods"]["sasrec"]["means"]["ndcg@10"] <= hi
    # the agent without its LLM is the backbone: no difference, p = 1
    same = parsed["methods"]["agent-no-llm"]["paired"]
    assert same["delta"] == 0.0 and same["tied"] == 6 and same["p_wilcoxon"] == 1.0
    # the agent paired with itself less the LLM (versus), on the same users
    (own,) = parsed["methods"]["agent"]["versus"]
    assert own["method"] == "agent-no-llm" and own["users"] == 6 and own["better"] + own["worse"] + own["tied"] == 6
    assert "## Paired against another method" in text and re.search(r"^\| agent \| agent-no-llm \| [+-]0\.\d{4} \|", text, re.M)
    for png in ("metrics.png", "cost_quality.png"):
        image = matplotlib.image.imread(run_dir / png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert report["backbone"] == "sasrec"


def test_configs_load_from_toml_and_yaml(tmp_path: Path) -> None:
    default = load_config(REPO / "eval" / "configs" / "ml1m-default.toml")
    assert (default.dataset, default.split, default.seed, default.users, default.ks) == ("ml-1m", "test", 2023, 200, [1, 5, 10, 20])
    kinds = {m.kind for m in default.methods}
    agents = [m for m in default.methods if isinstance(m, AgentMethod)]
    assert agents and all(sorted(m.variants) == ["bert4rec", "genre", "transitions", "year"] for m in agents)  # the shared variants
    own = EvalConfig.model_validate(
        {
            "variants": {"genre": "g"},
            "methods": [{"name": "a", "kind": "agent", "run": "r", "variants": {}}, {"name": "b", "kind": "agent", "run": "r"}],
        }
    )
    assert [m.variants for m in own.methods] == [{}, {"genre": Path("g")}]  # a method's own setting wins
    assert kinds == {"popularity", "backbone", "llm_rerank", "agent"} and default.backbone == "sasrec"
    assert load_config(REPO / "eval" / "configs" / "ml100k-smoke.toml").dataset == "ml-100k"
    yaml_path = tmp_path / "small.yaml"
    yaml_path.write_text(
        "dataset: ml-100k\nusers: 3\nmethods:\n  - {name: pop, kind: popularity}\n  - {name: agent, kind: agent, run: runs/x, "
        "max_rounds: 1, assembly: llm}\n"
    )
    config = load_config(yaml_path)
    assert config.name == "small" and config.methods[1].agent_config(20).assembly == "llm"
    with pytest.raises(ValueError, match="unique"):
        EvalConfig.model_validate({"methods": [{"name": "a", "kind": "popularity"}, {"name": "a", "kind": "popularity"}]})
    with pytest.raises(ValueError):
        EvalConfig.model_validate({"methods": [{"name": "a", "kind": "agent", "run": "x", "max_rounds": 99}]})
    # a changed definition changes the fingerprint, so old lines are never reused for it
    a = config.fingerprint(config.methods[1])
    changed = config.model_copy(update={"methods": [config.methods[0], config.methods[1].model_copy(update={"max_rounds": 2})]})
    assert changed.fingerprint(changed.methods[1]) != a
    # so does refitting a file fit on validation users that the method reads
    learned = load_config(yaml_path, methods=[{"name": "agent", "kind": "agent", "run": str(tmp_path), "assembly": "learned"}])
    before = learned.fingerprint(learned.methods[0])
    (tmp_path / "assembly.json").write_text("{}")
    assert learned.fingerprint(learned.methods[0]) != before
    with pytest.raises(ValueError, match="versus"):
        EvalConfig.model_validate({"methods": [{"name": "a", "kind": "popularity", "versus": ["b"]}]})


def test_cli_run_and_report(tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "cli.toml"
    config.write_text(
        f'dataset = "ml-100k"\nusers = 20\ndata_dir = "{data_dir}"\n'
        f'[[methods]]\nname = "popularity"\nkind = "popularity"\n'
        f'[[methods]]\nname = "sasrec"\nkind = "backbone"\nrun = "{tool_runs["plain"]}"\n'
    )
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["eval", "run", str(config), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert (out / "report.md").exists() and (out / "config.toml").read_text() == config.read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["sasrec"]["scored"] == 20
    report = runner.invoke(app, ["eval", "report", str(out), "--resamples", "200"])
    assert report.exit_code == 0, report.output
    assert "| sasrec | 20 | 0 |" in (out / "report.md").read_text()
    missing = runner.invoke(app, ["eval", "report", str(tmp_path / "nothing")])
    assert missing.exit_code == 1


def test_a_run_folder_in_use_is_refused(tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    config = make_config(tool_runs, data_dir, users=2)
    with run_lock(tmp_path), pytest.raises(RunLocked, match="in use"):
        run_eval(config, tmp_path, llm=RuleLLM(), progress=False)
    assert not (tmp_path / USERS_FILE).exists()


class SlowRuleLLM(RuleLLM):
    """The rule LLM with a short delay, recording how many calls were in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> LLMReply:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(0.05)
            return super().chat(messages, **kwargs)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_remote_llm_concurrency_is_bounded_and_changes_nothing(
    reference: tuple[Path, dict[str, Any], RuleLLM], tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    _, ref_results, _ = reference
    llm = SlowRuleLLM()
    results = run_eval(make_config(tool_runs, data_dir), tmp_path, llm=llm, concurrency=3, progress=False)
    assert 1 < llm.most <= 3
    assert figures(results) == figures(ref_results)
    assert len(per_user(tmp_path)) == 7 * 6


def test_the_report_says_which_code_computed_what() -> None:
    from eval.report import _code_note

    one = {"code_versions": ["a"], "methods": {"m": {"label": "M", "code_versions": ["a"]}}}
    assert _code_note(one) == ""
    apart = {
        "code_versions": ["a", "b"],
        "methods": {"m": {"label": "M", "code_versions": ["a"]}, "n": {"label": "N", "code_versions": ["b"]}},
    }
    assert "a: M; b: N" in _code_note(apart) and "Warning" not in _code_note(apart)
    mixed = {"code_versions": ["a", "b"], "methods": {"m": {"label": "M", "code_versions": ["a", "b"]}}}
    assert "Warning: the users of M" in _code_note(mixed)


def test_what_an_agent_method_needs_fitted_is_fit_first(
    tool_runs: dict[str, Path], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run without the prior or the assembly its agent method reads gets them, fit on
    validation users, before any user is scored (as a missing run is trained first)."""
    import agent.fitting.files

    monkeypatch.setattr(agent.fitting.files, "PRIOR_USERS", 40)
    monkeypatch.setattr(agent.fitting.files, "ASSEMBLY_USERS", 40)
    run = tmp_path / "run"
    shutil.copytree(tool_runs["plain"], run)
    method = {"name": "agent", "kind": "agent", "run": str(run), "max_rounds": 1, "menu_choice": "prior", "assembly": "learned"}
    config = EvalConfig.model_validate({"dataset": "ml-100k", "users": 4, "data_dir": str(data_dir), "methods": [method]})
    results = run_eval(config, tmp_path / "eval", llm=ScriptedLLM([]), progress=False)
    assert (run / "intent_prior.json").is_file() and (run / "assembly.json").is_file()
    assert results["methods"]["agent"]["scored"] == 4 and results["methods"]["agent"]["invalid"] == 0
