"""`toolrec eval intents` on real ML-100K: which menu intents hold the held-out item, and how
often each way of choosing picks one. An LLM that always prefers a hit reaches the oracle; one
whose scoring fails falls back to uniform weights, whose top is the menu's first intent."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_prior import view

from agent.fitting.prior import fit_prior, menus
from agent.llm.base import LLMError
from agent.llm.scripted import ScriptedLLM
from agent.prior import KINDS
from eval.intents import choice_signal, sample_users
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]


def test_choices_are_scored_against_the_held_out_item(toolbox: Toolbox) -> None:
    users = toolbox.dataset.user_ids[:40]
    per_user = menus(toolbox, users)
    # a clairvoyant scorer: all the weight on an intent that holds the held-out item (if any)
    preferences = []
    for _, entries, target in per_user:
        hits = [target in {i.id for i in e.items} for e in entries]
        preferences.append([1.0 if h else 0.0 for h in hits] if any(hits) else [1.0] * len(hits))
    report = choice_signal(toolbox, users, ScriptedLLM([], preferences=preferences))
    shares = {name: s["share"] for name, s in report["shares"].items()}
    assert report["users"] == 40 and report["split"] == "test" and "prior" not in shares
    assert shares["llm_top"] == shares["llm_expected"] == shares["oracle"] > 0
    assert shares["best_fixed"] == max(shares[k] for k in KINDS) >= shares["random"]
    for name, s in report["shares"].items():
        assert s["ci95"][0] <= s["share"] <= s["ci95"][1], name
    paired = report["llm"]["paired"]
    assert paired["random"]["delta"] == pytest.approx(shares["oracle"] - shares["random"], abs=1e-3)

    failing = choice_signal(toolbox, users, ScriptedLLM([], preferences=[LLMError("down")] * 40))
    assert failing["shares"]["llm_top"]["share"] == failing["shares"]["first"]["share"]
    assert failing["shares"]["llm_expected"]["share"] == pytest.approx(failing["shares"]["random"]["share"], abs=1e-3)


def test_validation_users_the_prior_was_fit_on_are_not_drawn(toolbox: Toolbox, tmp_path: Path) -> None:
    valid = view(toolbox, "valid", tmp_path)
    fit_users = [str(u) for u in toolbox.dataset.user_ids[:600]]
    fit_prior(valid, fit_users).prior.save(tmp_path)
    sample, left_out = sample_users(valid, 200, seed=1)
    assert left_out == 600 and len(sample) == 200 and not set(sample) & set(fit_users)
    on_test, none_left_out = sample_users(view(toolbox, "test", tmp_path), 200, seed=1)
    assert none_left_out == 0 and set(on_test) & set(fit_users)
