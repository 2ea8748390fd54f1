"""The real agent graph in its free-form mode (the LLM calls tools) driven by a scripted LLM on
real ML-100K tools: every path ends in a valid top-k list and a trace that says what happened.
The menu mode is tests/test_agent_menu.py."""

from __future__ import annotations

import json

import pytest

from agent.llm.base import LLMTimeout
from agent.llm.scripted import ScriptedLLM
from agent.recommend import Agent, recommend
from agent.request import RecommendError, RecommendRequest
from agent.rerank import RerankReply, picked
from agent.state import AgentConfig, Recommendation
from tools.registry import call_tool
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]

USER = "1"
FINISH = '{"name": "finish", "arguments": {}}'


def call(name: str, **arguments: object) -> str:
    return json.dumps({"name": name, "arguments": arguments})


def assert_valid(rec: Recommendation, toolbox: Toolbox, k: int = 10, user: str = USER) -> None:
    ids = [item.id for item in rec.items]
    assert len(ids) == k and len(set(ids)) == k
    history = {toolbox.dataset.item(int(d)).id for d in toolbox.user_history(user)}
    assert not history & set(ids)
    catalogue = set(toolbox.dataset.item_index)
    assert set(ids) <= catalogue
    assert all(item.provenance and item.reason for item in rec.items)


def tool_events(rec: Recommendation, node: str = "act") -> list:
    return [e for e in rec.trace if e.kind == "tool" and e.node == node]


def test_multi_step_plan(toolbox: Toolbox) -> None:
    llm = ScriptedLLM(
        [
            call("retrieve", genres=["Sci-Fi"], year_from=1980),
            call("semantic_search", query="space adventure"),
            FINISH,
        ]
    )
    rec = recommend(USER, k=10, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=3))
    assert_valid(rec, toolbox)
    acts = tool_events(rec)
    assert [e.tool for e in acts] == ["retrieve", "semantic_search"]
    assert acts[0].arguments["genres"] == ["Sci-Fi"] and acts[0].arguments["user_id"] == USER
    assert len(rec.llm_events) == 3 and all(e.valid_first_try for e in rec.llm_events)
    # the second plan prompt carried the first tool's observation
    assert "retrieve returned" in llm.calls[1].messages[-1].content
    found = [item for item in rec.items if any(p.tool == "retrieve" and p.constraints.get("genres") for p in item.provenance)]
    assert all("Sci-Fi" in item.attributes["genre"] for item in found)


def test_rounds_are_capped(toolbox: Toolbox) -> None:
    llm = ScriptedLLM([call("retrieve", genres=["Drama"]), call("retrieve", genres=["Comedy"]), call("retrieve", genres=["War"])])
    rec = recommend(USER, k=5, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=2))
    assert_valid(rec, toolbox, k=5)
    assert len(tool_events(rec)) == 2 and llm.remaining == 1 and rec.rounds == 2


def test_a_repeated_call_ends_the_search(toolbox: Toolbox) -> None:
    llm = ScriptedLLM([call("retrieve", genres=["Drama"]), call("retrieve", genres=["Drama"]), call("retrieve", genres=["War"])])
    rec = recommend(USER, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=3))
    assert_valid(rec, toolbox)
    assert len(tool_events(rec)) == 1 and llm.remaining == 1
    assert rec.has("repeated_call")


def test_invalid_json_gets_one_corrective_retry(toolbox: Toolbox) -> None:
    llm = ScriptedLLM(["I would like some sci-fi please", call("retrieve", genres=["Sci-Fi"]), FINISH])
    rec = recommend(USER, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=2))
    assert_valid(rec, toolbox)
    first, second = rec.llm_events[:2]
    assert first.valid_first_try is False and first.error
    assert second.error is None and "could not be used" in llm.calls[1].messages[-1].content
    assert [e.tool for e in tool_events(rec)] == ["retrieve"]


def test_unusable_replies_fall_back_to_the_backbone(toolbox: Toolbox) -> None:
    llm = ScriptedLLM(["no idea", "still no JSON"])
    rec = recommend(USER, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=2))
    assert_valid(rec, toolbox)
    assert rec.has("unusable_reply") and not tool_events(rec)
    seed = [e for e in rec.trace if e.node == "seed" and e.tool == "retrieve"]
    assert seed, "the pool was seeded by the backbone"


def test_unknown_tool_is_refused(toolbox: Toolbox) -> None:
    llm = ScriptedLLM([call("delete_everything"), call("drop_table", table="users")])
    rec = recommend(USER, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=1))
    assert_valid(rec, toolbox)
    assert not tool_events(rec)
    assert "delete_everything" in rec.llm_events[0].reply and rec.llm_events[0].error


def test_invented_attribute_value_is_reported_with_the_valid_ones(toolbox: Toolbox) -> None:
    llm = ScriptedLLM([call("retrieve", genres=["Cyberpunk"]), call("retrieve", genres=["Sci-Fi"])])
    rec = recommend(USER, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=2))
    assert_valid(rec, toolbox)
    bad, good = tool_events(rec)
    assert bad.error and "Cyberpunk" in bad.error and good.error is None
    observation = llm.calls[1].messages[-1].content
    assert "Valid values" in observation and "Sci-Fi" in observation


def test_tool_error_is_survived(toolbox: Toolbox) -> None:
    llm = ScriptedLLM([call("similar_items", items=["A Film That Does Not Exist 2049"]), FINISH])
    rec = recommend(USER, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=2))
    assert_valid(rec, toolbox)
    assert tool_events(rec)[0].error and tool_events(rec)[0].code == "tool_error"


def test_llm_timeout_falls_back(toolbox: Toolbox) -> None:
    llm = ScriptedLLM([LLMTimeout("no reply in 60 s")])
    rec = recommend(USER, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=2))
    assert_valid(rec, toolbox)
    assert rec.llm_events[0].error.startswith("timeout") and rec.llm_events[0].code == "timeout"
    assert any(e.kind == "fallback" and e.code == "timeout" for e in rec.trace)


def test_hallucinated_items_in_the_final_answer_never_reach_the_list(toolbox: Toolbox) -> None:
    llm = ScriptedLLM([call("retrieve", genres=["Comedy"]), json.dumps({"items": [1, 2, 999, "99999", "Titanic", 2]})])
    rec = recommend(USER, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=1, assembly="llm"))
    assert_valid(rec, toolbox)
    ids = [item.id for item in rec.items]
    assert "99999" not in ids and "Titanic" not in ids and len(set(ids)) == 10
    assert "99999" in rec.llm_events[-1].reply  # the reply named it; reading it as a candidate dropped it
    assert rec.backfilled == 0  # 2 usable picks lead, the fused order of the pool follows


def test_a_reranker_reply_is_read_the_same_way_everywhere() -> None:
    shown = ["10", "20", "30"]
    reply = RerankReply(items=[2, "3", "10", 99, "99", "Titanic", 2, "20"])
    # numbers (or their digits) are positions, other text counts only as a shown id; the rest and repeats drop
    assert picked(reply, shown) == ["20", "30", "10"]


def test_the_llm_cannot_choose_another_user(toolbox: Toolbox) -> None:
    llm = ScriptedLLM([call("retrieve", user_id="2", history=["50"], genres=["Drama"])])
    rec = recommend(USER, llm=llm, tools=toolbox, config=AgentConfig(planner="tools", max_rounds=1))
    assert_valid(rec, toolbox)
    arguments = tool_events(rec)[0].arguments
    assert arguments["user_id"] == USER and "history" not in arguments


def test_raw_history_of_titles(toolbox: Toolbox) -> None:
    history = ["Star Wars (1977)", "Empire Strikes Back, The (1980)", "Alien (1979)"]
    llm = ScriptedLLM([call("retrieve", genres=["Sci-Fi"])])
    rec = Agent(llm, toolbox, AgentConfig(planner="tools", max_rounds=1)).recommend(RecommendRequest(history=history))
    ids = [item.id for item in rec.items]
    assert len(set(ids)) == 10 and not {"50", "172", "183"} & set(ids)


def test_unknown_user_is_a_clear_error(toolbox: Toolbox) -> None:
    with pytest.raises(RecommendError, match="nobody"):
        recommend("nobody", llm=ScriptedLLM([]), tools=toolbox)


def test_no_rounds_is_the_backbone_itself(toolbox: Toolbox) -> None:
    rec = recommend(USER, llm=ScriptedLLM([]), tools=toolbox, config=AgentConfig(max_rounds=0, assembly="backbone", ensemble=False))
    assert_valid(rec, toolbox)
    backbone = call_tool(toolbox, "retrieve", {"user_id": USER, "k": 10}).output
    assert [i.id for i in rec.items] == [i.id for i in backbone.items]


def test_assembly_fuses_every_backbone_variant(toolbox: Toolbox) -> None:
    rec = recommend(USER, llm=ScriptedLLM([]), tools=toolbox, config=AgentConfig(max_rounds=0))
    assert_valid(rec, toolbox)
    ranked = [e.arguments["variant"] for e in rec.trace if e.node == "assemble" and e.tool == "rank"]
    seeded = [e.arguments["variant"] for e in rec.trace if e.node == "seed" and e.tool == "retrieve"]
    assert ranked == seeded == list(toolbox.variants) == ["plain", "genre"]
    assert toolbox.attribute_variants == ["genre"]  # the variants whose reasons name their attribute
