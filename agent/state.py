"""The agent's typed state and the records it hands back.

The graph state is a TypedDict of pydantic values. LangGraph merges node updates key by key;
`messages` and `trace` have reducers, so a node returns only what it adds to them. The
candidate pool is `agent.pool.Pool`.
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, Field

from agent.assembly import ASSEMBLY_FILE
from agent.intents import IntentWeight, MenuEntry
from agent.llm.base import ChatMessage
from agent.pool import Pool
from agent.prior import PRIOR_FILE
from agent.request import MenuChoice, PlannedCall, RecommendRequest
from tools.profile import UserProfileOutput
from tools.schemas import Provenance

Assembly = Literal["fused", "backbone", "llm", "learned"]
# menu: the agent drafts a menu of intents, runs them all, and one option-scoring call says how
# much each counts (small models choose among numbered options well, compose tool calls badly);
# tools: the LLM calls tools freely, round by round (for strong remote models).
Planner = Literal["menu", "tools"]
AGENT_TOOLS = ("retrieve", "semantic_search", "similar_items")


class AgentConfig(BaseModel):
    """How one recommendation is made; the evaluation's ablations vary these."""

    k: int = Field(10, ge=1, le=100)
    max_rounds: int = Field(
        2, ge=0, le=10, description="tools: plan steps (LLM calls) before assembly; menu: 0 skips the menu, else one scoring call"
    )
    tools: list[str] = Field(default_factory=lambda: list(AGENT_TOOLS), description="Tools the LLM may call")
    asked_tools: list[str] = Field(
        default_factory=lambda: [*AGENT_TOOLS, "top_items", "rank"],
        description="Tools the caller's planned calls may use (RecommendRequest.probes)",
    )
    probe_k: int = Field(20, ge=1, le=100, description="Items each LLM-chosen tool call adds to the pool")
    seed_k: int = Field(50, ge=1, le=200, description="Backbone candidates the pool starts with")
    assembly: Assembly = Field(
        "fused",
        description="fused: backbone score plus a bonus for items the LLM's probes found; backbone: backbone order; llm: the LLM picks; "
        "learned: the weights fit on validation users (RUN/assembly.json)",
    )
    ensemble: bool = Field(True, description="Assembly sums the z-scored scores of every backbone variant in the toolbox")
    probe_bonus: float = Field(0.3, ge=0.0, description="fused: bonus in backbone standard deviations")
    lead_taste: float = Field(
        0.1,
        ge=0.0,
        description="How much the user's taste reorders what the request's own planned calls found (which leads the list): the "
        "weight of its z-score against a match that falls from 1 to 0 over a call's result; 0.1 moves an item about two places in 20",
    )
    rerank_candidates: int = Field(20, ge=1, le=50, description="llm assembly: pool items shown to the LLM")
    max_tokens: int = 96
    temperature: float = 0.0
    seed: int = 0
    llm_timeout_s: float | None = 60.0
    retries: int = Field(1, ge=0, le=3, description="Corrective retries after an unusable reply")
    planner: Planner = Field("menu", description="menu: intents weighted by one option-scoring call; tools: free tool calls")
    menu_choice: MenuChoice = Field(
        "llm",
        description="menu: the LLM's probabilities weight the intents; uniform: equal weights, no LLM call (the ablation); prior: "
        "the prior learned on validation users (RUN/intent_prior.json), no LLM call",
    )
    orderings: int = Field(2, ge=1, le=18, description="menu: orderings of the options averaged, so that position bias cancels")
    debias_positions: bool = Field(
        False,
        description="menu: divide out the LLM's own preference for each position, measured once per menu size on a menu of alike "
        "options (PriDe), so that one ordering (orderings = 1) can stand in for several",
    )

    @property
    def calls_llm(self) -> bool:
        """Whether a recommendation made so calls an LLM: the tools planner's plan steps, a menu
        weighed by the LLM, or the LLM's reranking (a menu weighed by the prior or equally does not)."""
        plans = self.max_rounds > 0 and (self.planner == "tools" or self.menu_choice == "llm")
        return plans or self.assembly == "llm"

    def fitted_files(self, run: Path) -> list[Path]:
        """The files fit on validation users (kept in the run folder) that this configuration reads."""
        prior = self.max_rounds > 0 and self.planner == "menu" and self.menu_choice == "prior"
        return [*([run / PRIOR_FILE] if prior else []), *([run / ASSEMBLY_FILE] if self.assembly == "learned" else [])]


TraceCode = Literal[
    "unusable_reply",  # an LLM reply that could not be used, even after the corrective retry
    "timeout",  # an LLM call that ran out of its time budget
    "repeated_call",  # the LLM asked for a tool call it had made: the search has converged
    "refused_call",  # a planned call to a tool that is not allowed
    "tool_error",  # a tool call that came back with a typed error
    "no_ranking",  # the llm assembly got no usable order: the fused order is kept
    "rank_failed",  # assembly could not score the pool: the backbone's seed order is kept
    "incomplete",  # fewer than k items could be found
    "broad_call",  # a probe constraint admitting most of the catalogue, narrowed to the user's top values before it was sent
    "known_items",  # a probe whose items were all in the pool already: dropped, it could not change the list
    "scoring_failed",  # the option-scoring call failed (an error other than a timeout)
    "uniform_weights",  # the menu's intents count the same: scoring failed, is impossible, or too few intents
]


class TraceEvent(BaseModel):
    node: str
    kind: Literal["llm", "tool", "assembly", "validation", "fallback", "guard", "choice"]
    code: TraceCode | None = Field(None, description="What went wrong or ended the search, as a typed signal (None: nothing)")
    seconds: float = 0.0
    messages: list[ChatMessage] | None = None
    reply: str | None = None
    prompt_tokens: int = 0
    tokens_reused: int = Field(0, description="Prompt tokens served from the backend's evaluated prefix (0: none or unknown)")
    completion_tokens: int = 0
    cached: bool = False
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    observation: str | None = None
    error: str | None = None
    valid_first_try: bool | None = None
    intents: list[IntentWeight] | None = Field(None, description="choice: how much each menu intent counted")

    @property
    def tokens_evaluated(self) -> int:
        """Prompt tokens the backend computed for this call."""
        return self.prompt_tokens - self.tokens_reused


class RecommendedItem(BaseModel):
    id: str
    title: str
    year: int | None = None
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    score: float
    provenance: list[Provenance]
    reason: str
    via: str = Field("retrieve", description="The tool whose result the reason cites")


class Recommendation(BaseModel):
    user_id: str | None
    k: int
    items: list[RecommendedItem]
    backfilled: int = Field(description="Items completed from the backbone's ranking")
    rounds: int
    trace: list[TraceEvent]
    seconds: float

    @property
    def llm_events(self) -> list[TraceEvent]:
        return [e for e in self.trace if e.kind == "llm"]

    @property
    def tokens(self) -> int:
        return sum(e.prompt_tokens + e.completion_tokens for e in self.llm_events)

    def has(self, code: TraceCode) -> bool:
        return any(e.code == code for e in self.trace)


class AgentState(TypedDict, total=False):
    request: RecommendRequest
    profile: UserProfileOutput
    messages: Annotated[list[ChatMessage], operator.add]  # the plan conversation; nodes return what they add
    pool: Pool
    backbone: list[str]  # the backbone's own order of the seed candidates, for backfill
    round: int
    step: PlannedCall | None  # the validated plan step
    calls: list[str]  # tools mode: the probes sent so far (agent.probes.call_key), so none is sent twice
    menu: list[MenuEntry]  # menu mode: the intents run for this user, with what each found
    weights: list[float]  # menu mode: each menu entry's probability
    finished: bool
    final: list[str]
    scores: dict[str, float]  # assembly's score per pool item (fused or backbone)
    backfilled: int
    trace: Annotated[list[TraceEvent], operator.add]
