"""The menu planner through the real graph on real ML-100K tools, with the scripted LLM's option
preferences: one scoring call per recommendation, every intent run, the preferred intent's
items rise, reasons name the intent that found an item in words; a scoring failure falls back
to uniform weights and says so. Then the free-form planner's probe rules: a too-broad, repeated
or all-known probe is corrected or dropped, and counted (also by `toolrec bench agent`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli.bench import summarise
from agent.intents import Intent, draft_menu
from agent.llm.base import LLMError, LLMTimeout, NoLLM
from agent.llm.scoring import OptionScorer
from agent.llm.scripted import ScriptedLLM
from agent.pool import Find
from agent.recommend import Agent, recommend
from agent.request import RecommendRequest
from agent.runtime import LockedLLM, LockedScorer
from agent.state import AGENT_TOOLS, AgentConfig, Recommendation, TraceEvent
from tools.profile import UserProfileOutput
from tools.registry import call_tool
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

USER = "1"
FINISH = '{"name": "finish", "arguments": {}}'
# a bonus large enough that the weights, not the backbone, decide which probes lead
MENU = AgentConfig(k=10, max_rounds=1, probe_bonus=3.0)
TOOLS = AgentConfig(k=10, max_rounds=3, planner="tools")


def menu_of(toolbox: Toolbox, user: str = USER) -> list[Intent]:
    profile = call_tool(toolbox, "user_profile", {"user_id": user, "recent": 8, "top_values": 5}).output
    assert isinstance(profile, UserProfileOutput)
    return draft_menu(profile, toolbox, AGENT_TOOLS)


def menu_texts(toolbox: Toolbox, user: str = USER) -> list[str]:
    return [intent.text for intent in menu_of(toolbox, user)]


def choice(rec: Recommendation) -> TraceEvent:
    (event,) = [e for e in rec.trace if e.kind == "choice"]
    return event


def assert_valid(rec: Recommendation, toolbox: Toolbox, user: str = USER) -> None:
    ids = [item.id for item in rec.items]
    history = {toolbox.dataset.item(int(d)).id for d in toolbox.user_history(user)}
    assert len(ids) == rec.k and len(set(ids)) == rec.k and not history & set(ids)
    assert all(item.reason for item in rec.items)


def test_one_scoring_call_weighs_every_intent_and_the_preferred_ones_items_rise(toolbox: Toolbox) -> None:
    menu = menu_of(toolbox)
    texts = [intent.text for intent in menu]
    labels = [intent.label for intent in menu]  # what the LLM's menu shows
    uniform = recommend(USER, llm=ScriptedLLM([]), tools=toolbox, config=MENU.model_copy(update={"menu_choice": "uniform"}))
    assert_valid(uniform, toolbox)
    assert not uniform.llm_events and [i.probability for i in choice(uniform).intents] == pytest.approx(
        [1 / len(texts)] * len(texts), abs=1e-4
    )
    shown = [item.reason for item in uniform.items]
    wanted = len(texts) // 2
    weights = [1.0 if n == wanted else 0.01 for n in range(len(texts))]
    llm = ScriptedLLM([], preferences=[weights])
    rec = recommend(USER, llm=llm, tools=toolbox, config=MENU)
    assert_valid(rec, toolbox)

    assert len(llm.scorings) == 1 and not llm.calls and llm.scorings[0].options == labels and llm.scorings[0].orderings == 2
    (call,) = rec.llm_events
    assert call.node == "choose" and call.valid_first_try and call.reply == f"{wanted + 1}. {labels[wanted]}"
    probabilities = {i.text: i.probability for i in choice(rec).intents}
    assert probabilities[texts[wanted]] == pytest.approx(1 / (1 + 0.01 * (len(texts) - 1)), abs=1e-4)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert len([e for e in rec.trace if e.kind == "tool" and e.node == "menu"]) == len(texts)  # every intent was run

    # whichever intent is preferred, its items can only rise; over the menu, some do
    rises = []
    for n, text in enumerate(texts):
        one_hot = [1.0 if m == n else 0.01 for m in range(len(texts))]
        preferred = recommend(USER, llm=ScriptedLLM([], preferences=[one_hot]), tools=toolbox, config=MENU)
        rises.append([item.reason for item in preferred.items].count(text) - shown.count(text))
    assert min(rises) >= 0 and sum(rises) > 0, rises


def cited(finds: list[Find]) -> Find:
    """The intent a reason names: the highest place for how much it was wanted, then the most wanted."""
    return min(finds, key=lambda f: (f.position / f.weight, -f.weight))


def test_reasons_name_the_intent_that_placed_the_item_highest_for_its_weight(toolbox: Toolbox) -> None:
    texts = menu_texts(toolbox)
    weights = [float(n + 1) for n in range(len(texts))]  # the later an intent, the more it is wanted
    agent = Agent(ScriptedLLM([], preferences=[weights]), toolbox, MENU)
    request = RecommendRequest(user_id=USER)
    state = agent.graph.invoke({"request": request})
    rec = agent.result(request, state, 0.0)
    assert_valid(rec, toolbox)
    pool = state["pool"]
    credited = 0
    for item in rec.items:
        by_intent = [f for f in pool[item.id].finds if f.intent is not None]
        if by_intent:
            credited += 1
            assert item.reason == cited(by_intent).intent and item.reason in texts
        else:
            assert item.via == "retrieve" and item.reason.endswith(("watched next", "ranks next for you"))  # a seed alone
    assert credited >= 5
    shared = [i for i in pool.ids() if len({f.intent for f in pool[i].finds if f.intent}) > 1]
    assert shared, "some item is found by two intents"
    for item_id in shared:
        assert pool.explain(item_id).text == cited([f for f in pool[item_id].finds if f.intent]).intent


@pytest.mark.parametrize(
    ("failure", "code"), [(LLMError("runtime gone"), "scoring_failed"), (LLMTimeout("no scores within 1 s"), "timeout")]
)
def test_a_scoring_failure_falls_back_to_uniform_weights_and_is_traced(toolbox: Toolbox, failure: LLMError, code: str) -> None:
    rec = recommend(USER, llm=ScriptedLLM([], preferences=[failure]), tools=toolbox, config=MENU)
    assert_valid(rec, toolbox)
    (failed,) = rec.llm_events
    assert failed.code == code and failed.valid_first_try is False and type(failure).__name__ in failed.error
    event = choice(rec)
    assert event.code == "uniform_weights" and rec.has("uniform_weights")
    assert len({i.probability for i in event.intents}) == 1


def test_one_debiased_ordering_measures_the_position_prior_once_and_divides_it_out(toolbox: Toolbox) -> None:
    n = len(menu_texts(toolbox))
    # the model reads the same, position-only, preference into the user's menu and into the
    # content-free one: less the prior, no intent is preferred
    biased = [float(p + 1) for p in range(n)]
    llm = ScriptedLLM([], preferences=[biased, biased, [1.0] * n])
    agent = Agent(llm, toolbox, MENU.model_copy(update={"orderings": 1, "debias_positions": True}))
    first = agent.recommend(RecommendRequest(user_id=USER))
    assert [s.orderings for s in llm.scorings] == [1, 1] and llm.scorings[1].options == ["N/A"] * n
    assert "(nothing yet)" in llm.scorings[1].messages[-1].content  # no user's history in the prior's menu
    assert [i.probability for i in choice(first).intents] == pytest.approx([1 / n] * n, abs=1e-3)
    assert "less the position prior" in (choice(first).observation or "")
    second = agent.recommend(RecommendRequest(user_id=USER))
    assert len(llm.scorings) == 3  # the prior is measured once per menu size
    flat = [i.probability for i in choice(second).intents]
    assert flat.index(max(flat)) == 0 and flat[0] > flat[-1]  # a flat reading favours what the prior disfavours


def test_an_llm_that_cannot_score_gets_uniform_weights(toolbox: Toolbox) -> None:
    rec = recommend(USER, llm=NoLLM(), tools=toolbox, config=MENU)
    assert_valid(rec, toolbox)
    assert not rec.llm_events and choice(rec).code == "uniform_weights" and "cannot score" in choice(rec).error


def test_the_menu_prompt_puts_what_every_user_shares_first(toolbox: Toolbox) -> None:
    llm = ScriptedLLM([], preferences=[[1.0] * len(menu_texts(toolbox, u)) for u in ("1", "2")])
    agent = Agent(llm, toolbox, MENU)
    for user in ("1", "2"):
        agent.recommend(RecommendRequest(user_id=user))
    first, second = (s.messages for s in llm.scorings)
    assert first[0] == second[0] and first[0].role == "system"  # the system prompt: evaluated once, then reused
    assert first[1].content != second[1].content and first[1].content.startswith("Movies you watched most recently")


def test_no_rounds_skips_the_menu(toolbox: Toolbox) -> None:
    rec = recommend(USER, llm=ScriptedLLM([]), tools=toolbox, config=MENU.model_copy(update={"max_rounds": 0}))
    assert_valid(rec, toolbox)
    assert not [e for e in rec.trace if e.node in ("menu", "choose")]


def test_a_request_in_words_reaches_the_menu_prompt_and_its_constraints_every_intent(toolbox: Toolbox) -> None:
    # some intents find nothing before 1980 or become another's call: a failing scorer fits any menu size
    llm = ScriptedLLM([], preferences=[LLMError("no scores")])
    request = RecommendRequest(user_id=USER, request="something older", constraints={"year_to": 1979})
    rec = Agent(llm, toolbox, MENU).recommend(request)
    assert "What you ask for now: something older" in llm.scorings[0].messages[-1].content
    menu_calls = [e for e in rec.trace if e.kind == "tool" and e.node == "menu"]
    assert menu_calls and all(e.arguments.get("year_to", 9999) <= 1979 for e in menu_calls)


# --- the free-form planner: no probe that cannot change the list -----------------------------------


def call(name: str, **arguments: object) -> str:
    return json.dumps({"name": name, "arguments": arguments})


def test_a_constraint_admitting_most_genres_is_trimmed_before_it_is_sent(toolbox: Toolbox) -> None:
    genres = list(toolbox.attribute_items["genre"])
    rec = recommend(USER, llm=ScriptedLLM([call("retrieve", genres=genres[:12]), FINISH]), tools=toolbox, config=TOOLS)
    assert_valid(rec, toolbox)
    (sent,) = [e for e in rec.trace if e.kind == "tool" and e.node == "act"]
    assert 1 <= len(sent.arguments["genres"]) <= 2 and set(sent.arguments["genres"]) <= set(genres[:12])
    # corrected, and dropped as well where the trimmed call finds only what the pool holds
    assert sent.code in ("broad_call", "known_items") and "trimmed" in sent.observation


def test_a_call_sent_before_is_not_sent_again(toolbox: Toolbox) -> None:
    # the same call once the agent's rules apply: k is capped at probe_k either way
    replies = [call("retrieve", genres=["Film-Noir"]), call("retrieve", genres=["Film-Noir"], k=90), call("retrieve", genres=["War"])]
    llm = ScriptedLLM(replies)
    rec = recommend(USER, llm=llm, tools=toolbox, config=TOOLS)
    assert_valid(rec, toolbox)
    assert len([e for e in rec.trace if e.kind == "tool" and e.node == "act"]) == 1 and llm.remaining == 1
    (guard,) = [e for e in rec.trace if e.kind == "guard"]
    assert guard.code == "repeated_call" and rec.has("repeated_call")


def test_a_call_whose_items_are_all_in_the_pool_adds_nothing(toolbox: Toolbox) -> None:
    # the plain backbone's own top 20: all among its seeded top 50
    llm = ScriptedLLM([call("retrieve"), FINISH])
    rec = recommend(USER, llm=llm, tools=toolbox, config=TOOLS)
    assert_valid(rec, toolbox)
    (act,) = [e for e in rec.trace if e.kind == "tool" and e.node == "act"]
    assert act.code == "known_items" and "nothing new" in act.observation
    assert "nothing new" in llm.calls[1].messages[-1].content
    assert all(item.via == "retrieve" and item.reason.endswith(("watched next", "ranks next for you")) for item in rec.items)


def test_bench_agent_counts_what_the_planners_did(toolbox: Toolbox) -> None:
    genres = list(toolbox.attribute_items["genre"])
    free = [
        recommend(USER, llm=ScriptedLLM([call("retrieve", genres=genres[:12]), call("retrieve"), FINISH]), tools=toolbox, config=TOOLS),
        recommend(
            USER, llm=ScriptedLLM([call("retrieve", genres=["War"]), call("retrieve", genres=["War"], k=90)]), tools=toolbox, config=TOOLS
        ),
    ]
    menu = [recommend(USER, llm=ScriptedLLM([], preferences=[[1.0] * len(menu_texts(toolbox))]), tools=toolbox, config=MENU)]
    figures = summarise(free)
    assert figures["valid_first_try_share"] == 1.0 and figures["llm_calls_per_recommendation"] == 2.5
    # attempts: broad (trimmed, maybe also all known), known (dropped), War (sent), War again (refused)
    war = next(e for e in free[1].trace if e.node == "act" and e.kind == "tool")
    assert figures["degenerate_probe_share"] == (2 + (war.code == "known_items")) / 4 and figures["repeated_call_share"] == 0.25
    kept = [e for r in free for e in r.trace if e.node == "act" and e.kind == "tool" and e.code in (None, "broad_call")]
    assert figures["distinct_intents_per_user"] == len(kept) / 2
    assert figures["seconds_p95"] >= figures["seconds_p50"] > 0
    on_menu = summarise(menu)
    assert on_menu["llm_calls_per_recommendation"] == 1.0 and on_menu["degenerate_probe_share"] == 0.0
    assert on_menu["distinct_intents_per_user"] == len(menu_texts(toolbox))
    assert 1 <= on_menu["distinct_reasons_per_list"] <= len(menu_texts(toolbox)) + 2
    assert on_menu["prompt_tokens_evaluated_per_call"] == 0.0  # the scripted scorer reports no tokens
    assert set(on_menu["top_intent_kinds"]) <= {"recent_genres", "decade", "more_like", "rediscover", "variant", "theme", "favourite"}


def test_the_command_lines_locked_llm_scores_only_where_the_model_can(toolbox: Toolbox) -> None:
    scorer = LockedScorer(ScriptedLLM([], preferences=[[1.0] * len(menu_texts(toolbox))]))
    assert isinstance(scorer, OptionScorer) and not isinstance(LockedLLM(NoLLM()), OptionScorer)
    rec = recommend(USER, llm=scorer, tools=toolbox, config=MENU)
    assert len(rec.llm_events) == 1 and choice(rec).code is None
    chat_only = recommend(USER, llm=LockedLLM(ScriptedLLM([])), tools=toolbox, config=MENU)
    assert not chat_only.llm_events and choice(chat_only).code == "uniform_weights"


def test_an_empty_menu_leaves_the_backbones_list(toolbox: Toolbox) -> None:
    rec = recommend(USER, llm=ScriptedLLM([]), tools=toolbox, config=MENU.model_copy(update={"tools": ["lookup"]}))
    assert_valid(rec, toolbox)
    event = choice(rec)
    assert event.code == "uniform_weights" and event.intents == [] and not rec.llm_events
    assert all(item.via == "retrieve" and item.reason.endswith(("watched next", "ranks next for you")) for item in rec.items)


def test_the_command_line_shows_each_intents_weight(toolbox: Toolbox, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.app import _show_update

    texts = menu_texts(toolbox)
    rec = recommend(USER, llm=ScriptedLLM([], preferences=[[4.0] + [1.0] * (len(texts) - 1)]), tools=toolbox, config=MENU)
    for event in rec.trace:
        _show_update(event.node, {"trace": [event]})
    out = " ".join(capsys.readouterr().out.split())
    assert "choose LLM ok" in out and "reused" in out and "scripted over 1 ordering(s)" in out
    assert f"{4 / (len(texts) + 3):.2f} {' '.join(texts[0].split()[:3])}" in out  # the most wanted intent first, with its weight


def test_the_command_line_runs_the_menu_without_an_llm(tool_runs: dict[str, Path], data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`toolrec recommend --llm none --menu-choice uniform`: the menu runs (one round, no LLM
    call) and the list's reasons name the intents that found the items."""
    from typer.testing import CliRunner

    from eval.cli import app

    monkeypatch.setenv("TOOLREC_DATA_DIR", str(data_dir))
    args = ["recommend", "--run", str(tool_runs["plain"]), "--user", USER, "--llm", "none", "--json"]
    menu = CliRunner().invoke(app, [*args, "--menu-choice", "uniform"])
    assert menu.exit_code == 0, menu.output
    rec = Recommendation.model_validate_json(menu.output[menu.output.index("{") :])
    assert any(e.node == "menu" for e in rec.trace) and not [e for e in rec.trace if e.kind == "llm"]
    plain = Recommendation.model_validate_json((out := CliRunner().invoke(app, args).output)[out.index("{") :])
    assert not [e for e in plain.trace if e.node == "menu"]  # without an LLM and a menu choice: no menu
    assert {i.reason for i in rec.items} - {i.reason for i in plain.items}  # the intents' reasons
    bad = CliRunner().invoke(app, [*args, "--menu-choice", "best"])
    assert bad.exit_code != 0 and "llm | prior | uniform" in bad.output
