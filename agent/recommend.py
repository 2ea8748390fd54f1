"""The Python entry point: `recommend(user_or_history, k, llm=..., tools=...)`.

    toolbox = Toolbox.open(Path("runs/ml1m-sasrec"))
    rec = recommend("1m_42", k=10, llm=make_llm("local"), tools=toolbox)
    rec.items[0].title, rec.items[0].reason, rec.trace
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from agent.graph import build_graph
from agent.llm.base import LLM
from agent.nodes import Nodes
from agent.state import AgentConfig, AgentState, RecommendedItem, Recommendation, RecommendRequest
from tools.schemas import Provenance
from tools.toolbox import Toolbox

HIDDEN_CONSTRAINTS = {"exclude_ids", "history", "user_id", "k"}


def reason(provenance: list[Provenance], probes: int) -> str:
    """One line saying which tool found the item and under which constraints."""
    found = [p for p in provenance if p.tool != "rank"]
    chosen = found[1] if probes and len(found) > 1 else found[0]
    shown = {k: v for k, v in chosen.constraints.items() if k not in HIDDEN_CONSTRAINTS and v not in (None, [], {})}
    if not shown and chosen.tool == "retrieve":
        return f"top pick of the {chosen.variant or 'sequence'} model for this history"
    detail = "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in shown.items())
    return f"found by {chosen.tool}" + (f" ({detail})" if detail else "")


class Agent:
    """A compiled graph over one LLM, one toolbox and one configuration; reusable across users."""

    def __init__(self, llm: LLM, toolbox: Toolbox, config: AgentConfig | None = None) -> None:
        self.config = config or AgentConfig()
        self.nodes = Nodes(llm, toolbox, self.config)
        self.graph = build_graph(self.nodes)

    def stream(self, request: RecommendRequest) -> Iterator[tuple[str, dict[str, Any]]]:
        """(node, update) pairs as each step finishes; the last is validate's."""
        for chunk in self.graph.stream(AgentState(request=request), stream_mode="updates"):
            yield from chunk.items()

    def recommend(self, request: RecommendRequest) -> Recommendation:
        started = time.perf_counter()
        state: dict[str, Any] = {"trace": []}
        for _, update in self.stream(request):
            trace = state["trace"] + update.get("trace", [])
            state.update(update)
            state["trace"] = trace
        return self.result(request, state, time.perf_counter() - started)

    def result(self, request: RecommendRequest, state: dict[str, Any], seconds: float) -> Recommendation:
        pool, scores = state["pool"], state.get("scores", {})
        items = []
        for item_id in state["final"]:
            candidate = pool[item_id]
            item = candidate.item
            items.append(RecommendedItem(
                id=item.id, title=item.title, year=item.year, attributes=item.attributes,
                score=round(scores.get(item_id, 0.0), 4), provenance=item.provenance,
                reason=reason(item.provenance, candidate.probes),
            ))
        return Recommendation(
            user_id=request.user_id, k=self.config.k, items=items, backfilled=state.get("backfilled", 0),
            rounds=state.get("round", 0), trace=state["trace"], seconds=round(seconds, 3),
        )


def as_request(user_or_history: str | Sequence[str] | RecommendRequest) -> RecommendRequest:
    if isinstance(user_or_history, RecommendRequest):
        return user_or_history
    if isinstance(user_or_history, str):
        return RecommendRequest(user_id=user_or_history)
    return RecommendRequest(history=list(user_or_history))


def recommend(
    user_or_history: str | Sequence[str] | RecommendRequest,
    k: int = 10,
    *,
    llm: LLM,
    tools: Toolbox,
    config: AgentConfig | None = None,
) -> Recommendation:
    """A top-k list for a user id or a raw history (item ids or titles, oldest first)."""
    config = (config or AgentConfig()).model_copy(update={"k": k})
    return Agent(llm, tools, config).recommend(as_request(user_or_history))
