"""The learned prior over menu intents: fit on validation users of real ML-100K without ever
reading a test target, saved with the run, and used by the agent in place of the LLM's choice
(`menu_choice = "prior"`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import only_validation_reads

from agent.fitting.prior import fit_prior
from agent.llm.scripted import ScriptedLLM
from agent.prior import PRIOR_FILE, IntentPrior
from agent.recommend import recommend
from agent.state import AgentConfig
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]


def view(toolbox: Toolbox, split: str, run_dir: Path) -> Toolbox:
    """The fixture toolbox's dataset, models and indexes with another history split and run folder."""
    return Toolbox(toolbox.dataset, toolbox.variants, run_dir=run_dir, split=split, indexes=toolbox.indexes)  # type: ignore[arg-type]


def test_the_prior_is_fit_on_validation_targets_only(toolbox: Toolbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    valid = view(toolbox, "valid", tmp_path)
    read = only_validation_reads(monkeypatch, "prior")
    users = valid.dataset.user_ids[:80]
    report = fit_prior(valid, users)
    monkeypatch.undo()
    assert read and set(read) == {"valid"}
    assert report.users == 80 and 5 <= report.intents_per_user <= 8
    rates = report.hit_rate
    assert {"random", "first", "oracle", "prior", "recent_genres", "more_like"} <= set(rates)
    assert all(0 <= v <= rates["oracle"] for k, v in rates.items() if k != "oracle") and rates["oracle"] > 0
    path = report.prior.save(tmp_path)
    assert path == tmp_path / PRIOR_FILE and IntentPrior.load(tmp_path) == report.prior


def test_the_prior_refuses_histories_that_hold_the_validation_item(toolbox: Toolbox) -> None:
    with pytest.raises(ValueError, match="split='valid'"):
        fit_prior(toolbox, ["1", "2"])


def test_the_agent_weighs_the_menu_by_the_saved_prior_without_an_llm_call(toolbox: Toolbox, tmp_path: Path) -> None:
    report = fit_prior(view(toolbox, "valid", tmp_path), toolbox.dataset.user_ids[:60])
    report.prior.save(tmp_path)
    config = AgentConfig(max_rounds=1, menu_choice="prior")
    rec = recommend("1", llm=ScriptedLLM([]), tools=view(toolbox, "test", tmp_path), config=config)
    (choice,) = [e for e in rec.trace if e.kind == "choice"]
    assert not rec.llm_events and choice.code is None and "prior" in choice.observation
    assert sum(i.probability for i in choice.intents) == pytest.approx(1.0, abs=1e-3) and len({i.probability for i in choice.intents}) > 1
    missing = recommend("1", llm=ScriptedLLM([]), tools=view(toolbox, "test", tmp_path / "elsewhere"), config=config)
    assert [e.code for e in missing.trace if e.kind == "choice"] == ["uniform_weights"]
