"""The Python entry point: `recommend(user_or_history, k, llm=..., tools=...)`.

toolbox = Toolbox.open(Path("runs/ml1m-sasrec"))
rec = recommend("1m_42", llm=make_llm("local"), tools=toolbox)   # k: config.k (10) unless given
rec.items[0].title, rec.items[0].reason, rec.trace
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from agent.graph import build_graph
from agent.llm.base import LLM
from agent.planners import Planner, make_planner
from agent.pool import Pool
from agent.request import RecommendRequest
from agent.state import AgentConfig, AgentState, Recommendation, RecommendedItem
from tools.toolbox import Toolbox


class Agent:
    """A compiled graph over one LLM, one toolbox and one configuration; reusable across users."""

    def __init__(self, llm: LLM, toolbox: Toolbox, config: AgentConfig | None = None) -> None:
        self.config = config or AgentConfig()
        self.planner: Planner = make_planner(llm, toolbox, self.config)
        self.graph = build_graph(self.planner)

    @property
    def llm(self) -> LLM:
        return self.planner.llm

    @property
    def toolbox(self) -> Toolbox:
        return self.planner.toolbox

    def with_k(self, k: int | None) -> Agent:
        """This agent, or one like it that lists `k` items (None: as configured)."""
        if k is None or k == self.config.k:
            return self
        return Agent(self.llm, self.toolbox, self.config.model_copy(update={"k": k}))

    def recommend(self, request: RecommendRequest, on_step: Callable[[str, dict[str, Any]], None] | None = None) -> Recommendation:
        """The graph's run for one request; `on_step(node, update)` sees each step as it finishes
        (the command line shows them), the state itself is LangGraph's, reducers applied."""
        started = time.perf_counter()
        if on_step is None:
            state = self.run(request)
        else:
            state = AgentState()
            for mode, chunk in self.graph.stream(AgentState(request=request), stream_mode=["updates", "values"]):
                if mode == "values":
                    state = cast(AgentState, chunk)
                else:
                    for node, update in cast(dict[str, dict[str, Any]], chunk).items():
                        on_step(node, update)
        return self.result(request, state, time.perf_counter() - started)

    def run(self, request: RecommendRequest) -> AgentState:
        """The graph's final state for one request (the pool, the trace, the list)."""
        return cast(AgentState, self.graph.invoke(AgentState(request=request)))

    def result(self, request: RecommendRequest, state: AgentState, seconds: float) -> Recommendation:
        items = recommended_items(self.toolbox, state["pool"], state["final"], state.get("scores", {}))
        return Recommendation(
            user_id=request.user_id,
            k=self.config.k,
            items=items,
            backfilled=state.get("backfilled", 0),
            rounds=state.get("round", 0),
            trace=state["trace"],
            seconds=round(seconds, 3),
        )


def recommended_items(toolbox: Toolbox, pool: Pool, ids: Sequence[str], scores: Mapping[str, float]) -> list[RecommendedItem]:
    """The listed pool items with their scores and one reason each, in words (`Pool.explain`)."""
    items, phrases = [], toolbox.variant_phrases
    for item_id in ids:
        item = pool[item_id].item
        why = pool.explain(item_id, toolbox.spoken_title, phrases, toolbox.genres_of)
        items.append(
            RecommendedItem(
                id=item.id,
                title=item.title,
                year=item.year,
                attributes=item.attributes,
                score=round(scores.get(item_id, 0.0), 4),
                provenance=item.provenance,
                reason=why.text,
                via=why.tool,
            )
        )
    return items


# Called once per turn or request by the conversation, the server and MCP: a test hands each
# turn a fresh scripted agent; a deployment shares one agent (and one model) across them all.
AgentFactory = Callable[[], Agent]


def as_request(user_or_history: str | Sequence[str] | RecommendRequest) -> RecommendRequest:
    if isinstance(user_or_history, RecommendRequest):
        return user_or_history
    if isinstance(user_or_history, str):
        return RecommendRequest(user_id=user_or_history)
    return RecommendRequest(history=list(user_or_history))


def recommend(
    user_or_history: str | Sequence[str] | RecommendRequest,
    k: int | None = None,
    *,
    llm: LLM,
    tools: Toolbox,
    config: AgentConfig | None = None,
) -> Recommendation:
    """A top-k list for a user id or a raw history (item ids or titles, oldest first); k is
    `config.k` unless given."""
    config = config or AgentConfig()
    if k is not None:
        config = config.model_copy(update={"k": k})
    return Agent(llm, tools, config).recommend(as_request(user_or_history))
