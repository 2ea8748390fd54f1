"""What every planner shares: the nodes before and after its middle, and their helpers.

    profile -> seed -> (the planner's middle) -> assemble -> validate

Each node reads the state and returns the keys it changes. The agent owns who the user is
(user_id / history are always overwritten with the request's), how many items a probe adds, and
what may end up in the list. What the tools return goes on the candidate pool (`agent.pool`),
each find with its role.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from agent.assembly import ASSEMBLY_FILE, LearnedAssembly, item_signals
from agent.llm.base import LLM, ChatMessage
from agent.llm.parsing import StructuredResult, ask_structured
from agent.pool import Pool, Role
from agent.probes import impose, probe_arguments
from agent.prompts import domain_of, render
from agent.request import PlannedCall, RecommendError, RecommendRequest
from agent.rerank import RerankReply, picked
from agent.state import AgentConfig, AgentState, TraceEvent
from tools.profile import UserProfileOutput
from tools.registry import TOOLS, ToolResult, call_tool
from tools.schemas import ItemsOutput
from tools.titles import item_line
from tools.toolbox import Toolbox

SHOWN = 5  # items per observation: small models read short prompts best


def describe(result: ToolResult, primary: str | None) -> str:
    """What a tool call returned, as the LLM and the trace read it."""
    if result.error is not None:
        valid = f" Valid values: {', '.join(result.error.valid[:25])}." if result.error.valid else ""
        return f"error: {result.error.message}.{valid}"
    output = result.output
    if not isinstance(output, ItemsOutput):
        return result.to_message()
    lines = [
        f"{i}. {item_line(item.title, item.year, item.attributes.get(primary or '', []))}"
        for i, item in enumerate(output.items[:SHOWN], start=1)
    ]
    more = len(output.items) - SHOWN
    return "\n".join(lines + ([f"... and {more} more"] if more > 0 else []))


def traced_call(toolbox: Toolbox, node: str, name: str, arguments: dict[str, Any]) -> tuple[ToolResult, TraceEvent]:
    """One tool call and its trace event (what it returned, as the LLM and the trace read it)."""
    result = call_tool(toolbox, name, arguments)
    event = TraceEvent(
        node=node,
        kind="tool",
        seconds=result.elapsed_ms / 1000,
        tool=name,
        arguments=arguments,
        observation=describe(result, toolbox.primary_attribute),
        error=result.error.message if result.error else None,
        code="tool_error" if result.error else None,
    )
    return result, event


def llm_events(node: str, result: StructuredResult[Any]) -> list[TraceEvent]:
    """One trace event per attempt of a structured LLM call."""
    return [
        TraceEvent(
            node=node,
            kind="llm",
            code="timeout" if attempt.timed_out else "unusable_reply" if attempt.error else None,
            seconds=attempt.reply.seconds if attempt.reply else 0.0,
            messages=attempt.messages,
            reply=attempt.reply.text if attempt.reply else None,
            prompt_tokens=attempt.reply.prompt_tokens if attempt.reply else 0,
            tokens_reused=attempt.reply.prompt_tokens_reused if attempt.reply else 0,
            completion_tokens=attempt.reply.completion_tokens if attempt.reply else 0,
            cached=attempt.reply.cached if attempt.reply else False,
            error=attempt.error,
            valid_first_try=result.first_valid if index == 0 else None,
        )
        for index, attempt in enumerate(result.attempts)
    ]


class Planner:
    """The shared nodes over one LLM, one toolbox and one configuration; a planner subclass adds
    its middle (`agent.graph` wires it)."""

    def __init__(self, llm: LLM, toolbox: Toolbox, config: AgentConfig) -> None:
        unknown = [t for t in config.tools if t not in TOOLS]
        if unknown:
            raise ValueError(f"unknown tools {unknown}; known: {', '.join(TOOLS)}")
        self.llm, self.toolbox, self.config = llm, toolbox, config
        self.domain = domain_of(toolbox.dataset.name)
        self.primary = toolbox.primary_attribute
        self.learned: LearnedAssembly | None = None
        if config.assembly == "learned":
            run = toolbox.run_dir
            if run is None or not (run / ASSEMBLY_FILE).is_file():
                raise ValueError(f"assembly 'learned' needs {ASSEMBLY_FILE} in the run folder: `toolrec intents fit-assembly`")
            self.learned = LearnedAssembly.load(run)
            missing = set(self.learned.variants) - set(toolbox.variants)
            if missing:
                raise ValueError(f"{ASSEMBLY_FILE} reads variants {sorted(missing)} that this toolbox lacks (--variant)")

    # --- helpers -------------------------------------------------------------------------

    def tool(self, node: str, name: str, arguments: dict[str, Any]) -> tuple[ToolResult, TraceEvent]:
        return traced_call(self.toolbox, node, name, arguments)

    def probe_arguments(self, name: str, arguments: dict[str, Any], request: RecommendRequest) -> dict[str, Any]:
        return probe_arguments(name, arguments, request, self.config.probe_k)

    def ask(self, messages: list[ChatMessage], model: type[BaseModel]) -> StructuredResult[Any]:
        c = self.config
        return ask_structured(
            self.llm,
            messages,
            model,
            retries=c.retries,
            max_tokens=c.max_tokens,
            temperature=c.temperature,
            seed=c.seed,
            timeout=c.llm_timeout_s,
        )

    def profile_values(self, profile: UserProfileOutput, request: RecommendRequest, recent: int | None = None) -> dict[str, str]:
        """What the plan and menu prompts say about the user: the `recent` latest items (all the
        profile holds by default), favourite values, the request."""
        primary = self.primary or ""
        lines = [f"- {item_line(h.title, h.year, h.attributes.get(primary, []))}" for h in profile.recent_items[:recent]]
        return {
            "recent": "\n".join(lines) or "(nothing yet)",
            "top_values": ", ".join(f"{v.value} ({v.count})" for v in profile.attributes.get(primary, [])) or "-",
            "request": f"\nWhat you ask for now: {request.request}\n" if request.request else "",
        }

    # --- nodes ---------------------------------------------------------------------------

    def profile(self, state: AgentState) -> dict[str, Any]:
        """Who the user is (the user_profile tool)."""
        request = state["request"]
        profile, event = self.tool("profile", "user_profile", {**request.subject(), "recent": 8, "top_values": 5})
        if profile.error is not None:
            raise RecommendError(profile.error.message)
        return {
            "profile": profile.output,
            "messages": [],
            "round": 0,
            "step": None,
            "calls": [],
            "finished": self.config.max_rounds == 0,
            "trace": [event],
        }

    def seed(self, state: AgentState) -> dict[str, Any]:
        """The pool starts from every backbone variant's own top candidates (the default first),
        plus what the caller's planned calls find."""
        request = state["request"]
        pool = Pool()
        events: list[TraceEvent] = []
        backbone: list[str] = []
        for variant in self.toolbox.variants:
            seed, event = self.tool("seed", "retrieve", impose("retrieve", {"k": self.config.seed_k, "variant": variant}, request))
            if seed.error is not None or not isinstance(seed.output, ItemsOutput):
                raise RecommendError(f"the backbone could not rank for this user: {seed.error.message if seed.error else 'no output'}")
            events.append(event)
            backbone = backbone or [item.id for item in seed.output.items]
            pool = pool.add(seed.output.items, "seed")
        for planned in request.probes:  # calls the caller asked for, made like the LLM's probes
            if planned.name not in self.config.asked_tools:
                refusal = f"planned call to {planned.name!r} refused: not an allowed tool"
                events.append(TraceEvent(node="seed", kind="fallback", code="refused_call", tool=planned.name, error=refusal))
                continue
            pool, event = self._probe("seed", pool, planned, request, "asked")
            events.append(event)
        return {"pool": pool, "backbone": backbone, "trace": events}

    def _probe(self, node: str, pool: Pool, call: PlannedCall, request: RecommendRequest, role: Role) -> tuple[Pool, TraceEvent]:
        """One planned call made under the request's rules; its items join the pool under `role`."""
        result, event = self.tool(node, call.name, self.probe_arguments(call.name, call.arguments, request))
        if isinstance(result.output, ItemsOutput):
            pool = pool.add(result.output.items, role)
        return pool, event

    def variant_scores(self, state: AgentState, variants: list[str]) -> tuple[dict[str, dict[str, float]] | None, list[TraceEvent]]:
        """Each variant's score of every pool item (the rank tool), or None where ranking failed."""
        events: list[TraceEvent] = []
        scores: dict[str, dict[str, float]] = {}
        for variant in variants:
            ranked, event = self.tool(
                "assemble", "rank", {**state["request"].subject(), "candidates": state["pool"].ids(), "by": "model", "variant": variant}
            )
            events.append(event)
            if not isinstance(ranked.output, ItemsOutput):
                return None, events
            key = f"model:{self.toolbox.variant(variant)}"
            scores[variant] = {item.id: item.scores[key] for item in ranked.output.items}
        return scores, events

    def assemble(self, state: AgentState) -> dict[str, Any]:
        """The pool in order: the learned assembly, the fusion of the variants' scores (with the
        probes' bonus) or one backbone's, then the LLM's reranking where configured; what the
        person asked for by name leads."""
        started = time.perf_counter()
        pool = state["pool"]
        if self.learned is not None:
            variants = self.learned.variants
        else:
            variants = list(self.toolbox.variants) if self.config.ensemble else [self.toolbox.default_variant]
        scores, events = self.variant_scores(state, variants)
        if scores is None:
            # the pool came from the backbones themselves; the seed order is the fallback
            kept = TraceEvent(
                node="assemble",
                kind="fallback",
                code="rank_failed",
                error="the pool could not be ranked: the backbone's seed order is kept",
            )
            return {"final": state["backbone"], "scores": {}, "trace": [*events, kept]}
        if self.learned is not None:
            request = state["request"]
            history = self.toolbox.history(request.user_id, request.history)
            fused = self.learned.scores(pool, scores, item_signals(self.toolbox, pool.ids(), history))
        else:
            fused = pool.fuse(scores, bonus=self.config.probe_bonus if self.config.assembly == "fused" else 0.0)
        order = sorted(fused, key=lambda i: -fused[i])
        if self.config.assembly == "llm":
            order, llm_trace = self._rerank(state, order)
            events += llm_trace
        led = pool.lead(fused, self.config.lead_taste)
        if led:
            led = pool.keep_own(led, state["backbone"], state["request"].own_share, self.config.k)
            first = set(led)
            order = [*led, *(i for i in order if i not in first)]
        note = TraceEvent(
            node="assemble",
            kind="assembly",
            seconds=time.perf_counter() - started,
            observation=f"{self.config.assembly}: {len(order)} ordered"
            + (f", led by the {len(led)} items the request's own calls found" if led else ""),
        )
        return {"final": order, "scores": fused, "trace": [*events, note]}

    def _rerank(self, state: AgentState, order: list[str]) -> tuple[list[str], list[TraceEvent]]:
        """The LLM's order of the top candidates (`agent.rerank`), the rest of `order` after it."""
        shown = order[: self.config.rerank_candidates]
        pool = state["pool"]
        items = [pool[i].item for i in shown]
        candidates = "\n".join(
            f"{n}. {item_line(it.title, it.year, it.attributes.get(self.primary or '', []))}" for n, it in enumerate(items, start=1)
        )
        recent = "; ".join(h.title for h in state["profile"].recent_items[:5])
        prompt = render(self.domain, "rerank", recent=recent, candidates=candidates, k=self.config.k)
        result = self.ask([ChatMessage(role="user", content=prompt)], RerankReply)
        events = llm_events("assemble", result)
        if result.value is None:
            kept = TraceEvent(node="assemble", kind="fallback", code="no_ranking", error="no usable ranking: the fused order kept")
            return order, [*events, kept]
        chosen = picked(result.value, shown)
        first = set(chosen)
        return [*chosen, *(i for i in order if i not in first)], events

    def validate(self, state: AgentState) -> dict[str, Any]:
        """Exactly k items, all from the pool (never an item no tool returned), none from the
        history or the exclusions, no duplicates; what is missing comes from the backbone."""
        k, pool, request = self.config.k, state["pool"], state["request"]
        history = self.toolbox.history(request.user_id, request.history)
        assert history is not None  # the profile node already refused an unknown user
        excluded = set(request.exclude) | {self.toolbox.dataset.item(int(d)).id for d in history}
        done = pool.complete(state["final"], k, backbone=state["backbone"], excluded=excluded)
        detail = f"{len(done.items)} items; {done.filled} completed from the backbone"
        if done.dropped:
            detail += f"; dropped {len(done.dropped)} not in the pool or repeated: {done.dropped[:10]}"
        short = len(done.items) < k
        event = TraceEvent(
            node="validate",
            kind="validation",
            observation=detail,
            code="incomplete" if short else None,
            error=f"only {len(done.items)} items could be found" if short else None,
        )
        return {"final": done.items, "backfilled": done.filled, "trace": [event]}
