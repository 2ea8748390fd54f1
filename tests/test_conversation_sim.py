"""The simulated-user evaluation of conversations on real ML-100K tools: the protocol's numbers,
and a simulator that names its hidden target is overruled."""

from __future__ import annotations

from agent.chat import Conversation
from agent.cli.runtime import agent_config, shared_agent_factory
from agent.llm.base import NoLLM
from agent.llm.scripted import ScriptedLLM
from eval.conversation_sim import LLMUser, RuleUser, SimConfig, simulate, target_of
from tools.toolbox import Toolbox, normalize

pytest_plugins = ["fixtures_tools"]


def test_simulation_reports_hits_and_turns(toolbox: Toolbox) -> None:
    llm = NoLLM()
    conversation = Conversation(shared_agent_factory(llm, toolbox, agent_config(llm, k=5)), toolbox)
    report = simulate(toolbox, conversation, SimConfig(users=6, turns=3, k=5, seed=1), None, progress=False)
    assert report["users"] == 6 and 0.0 <= report["hit@3"] <= 1.0
    assert 1.0 <= report["avg_turns"] <= 3.0
    assert list(report["hit_by_turn"]) == ["hit@1", "hit@2", "hit@3"]
    for dialogue in report["dialogues"]:
        turns = dialogue["turns"]
        assert 1 <= len(turns) <= 3 and (dialogue["hit_turn"] is None) == (not turns[-1]["hit"])
        title = normalize(dialogue["target_title"])
        assert all(title not in normalize(t["message"]) for t in turns)  # the target is never named
        shown = [i for t in turns for i in t["shown"]]
        assert len(shown) == len(set(shown))  # no item shown twice in a conversation


def test_a_leaking_simulator_is_overruled(toolbox: Toolbox) -> None:
    user = toolbox.dataset.user_ids[0]
    target = target_of(toolbox, user)
    leaky = LLMUser(ScriptedLLM([f"Just give me {target.title}!", "I want something gentle and old"]), toolbox, user)
    first = leaky.message(1, target, [])
    assert first == RuleUser(toolbox, user).message(1, target, []) and leaky.leaks == 1
    assert leaky.message(2, target, []) == "I want something gentle and old"
