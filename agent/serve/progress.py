"""What the agent is doing while a streamed turn runs: each graph step, in words, as it finishes.

The conversation asks its agent factory for an agent per turn; `observed(factory)` hands out
the same agent (the same nodes and compiled graph) with its steps reported to whatever sink the
worker thread running the turn has set with `watching(sink)`. A turn nobody watches runs as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel

from agent.recommend import Agent, AgentFactory
from agent.request import RecommendRequest
from agent.state import Recommendation

# What each step of the agent's graph (agent/graph.py) does, as the page says it.
STEP_WORDS = {
    "profile": "read the history",
    "seed": "ranked the whole catalogue",
    "menu": "drafted ways to look",
    "choose": "weighed them",
    "gather": "searched",
    "plan": "planned a search",
    "act": "searched",
    "assemble": "put the list together",
    "validate": "checked the list",
}

SEARCHES = ("gather", "act")  # the steps whose tool calls are the searches the person asked about


class Step(BaseModel):
    node: str
    text: str
    tools: int = 0  # tool calls the step made


StepSink = Callable[[Step], None]
_SINK: ContextVar[StepSink | None] = ContextVar("toolrec_step_sink", default=None)


@contextmanager
def watching(sink: StepSink) -> Iterator[None]:
    """Report the steps of the turns run in this context (this thread) to `sink`."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


class _Observed(Agent):
    """An agent sharing `inner`'s nodes and compiled graph that reports its steps when watched."""

    def __init__(self, inner: Agent) -> None:  # no new graph: the inner one, compiled once
        self.config, self.planner, self.graph = inner.config, inner.planner, inner.graph

    def recommend(self, request: RecommendRequest, on_step: Callable[[str, dict[str, Any]], None] | None = None) -> Recommendation:
        sink = _SINK.get()
        if on_step is None and sink is not None:
            on_step = lambda node, update: sink(step(node, update))
        return super().recommend(request, on_step=on_step)


def step(node: str, update: dict[str, Any]) -> Step:
    tools = sum(1 for event in update.get("trace", []) if event.kind == "tool")
    words = STEP_WORDS.get(node, node)
    if node in SEARCHES and tools > 1:
        words = f"{words} {tools} ways"
    return Step(node=node, text=words, tools=tools)


def observed(factory: AgentFactory) -> AgentFactory:
    """The factory's agents, watchable; anything that is not an Agent (a test double) as is."""
    return lambda: (lambda agent: _Observed(agent) if isinstance(agent, Agent) else agent)(factory())
