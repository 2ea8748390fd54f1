"""The product path end to end: the real embedded LLM plans over real ML-100K tools."""

from __future__ import annotations

import os

import pytest

from agent.llm.factory import make_llm
from agent.recommend import recommend
from agent.settings import AgentSettings
from agent.state import AgentConfig
from tools.toolbox import Toolbox

pytest_plugins = ["fixtures_tools"]
pytestmark = pytest.mark.llm


def test_real_llm_yields_a_valid_top10_with_tool_calls(toolbox: Toolbox) -> None:
    settings = AgentSettings()
    if not settings.resolved_embedded_model_path().exists():
        if os.environ.get("CI"):
            pytest.fail("the embedded model is missing: scripts/test.sh runs `toolrec models get` first")
        pytest.skip("no embedded model; run `toolrec models get`")
    llm = make_llm("local", settings)
    rec = recommend("1", k=10, llm=llm, tools=toolbox, config=AgentConfig(max_rounds=2))

    ids = [item.id for item in rec.items]
    history = {toolbox.dataset.item(int(d)).id for d in toolbox.user_history("1")}
    assert len(ids) == 10 and len(set(ids)) == 10 and not history & set(ids)
    planned = [e for e in rec.trace if e.kind == "tool" and e.node == "act"]
    assert planned, [e.reply for e in rec.llm_events]
    assert all(e.prompt_tokens > 0 and e.completion_tokens > 0 for e in rec.llm_events if e.error is None)
    assert rec.llm_events[0].messages[0].role == "system"
