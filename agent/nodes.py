"""The graph's nodes: profile -> plan -> act -> (plan | assemble) -> validate.

Each node reads the state and returns the keys it changes. The LLM chooses tools and their
attribute arguments; the agent owns who the user is (user_id / history are always overwritten
with the request's), how many items a probe adds, and what may end up in the list.
"""

from __future__ import annotations

import json
import time
from functools import cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, create_model

from agent.llm.base import LLM, ChatMessage
from agent.llm.parsing import StructuredResult, ask_structured
from agent.prompts import domain_of, render
from agent.state import AgentConfig, AgentState, Candidate, RecommendRequest, TraceEvent
from tools.constraints import Filters
from tools.registry import TOOLS, ToolResult, call_tool
from tools.schemas import ItemsOutput, ScoredItem
from tools.toolbox import Toolbox, normalize

FINISH = "finish"
# Arguments the agent sets itself: the LLM never chooses whose history is read.
AGENT_OWNED = ("user_id", "history")
HIDDEN_ARGUMENTS = {*AGENT_OWNED, "exclude_ids", "attributes", "exclude_attributes", "space"}
SHOWN = 5  # items per observation: small models read short prompts best


class RecommendError(ValueError):
    """The request cannot be served (unknown user, empty history, ...); says why."""


@cache
def plan_step_model(names: tuple[str, ...]) -> type[BaseModel]:
    """A plan step whose `name` must be one of the allowed tools (or finish)."""
    return create_model(
        "PlanStep",
        name=(Literal[(*names, FINISH)], Field(description="Tool to call")),  # type: ignore[valid-type]
        arguments=(dict[str, Any], Field(default_factory=dict)),
    )


class RerankReply(BaseModel):
    items: list[int | str] = Field(min_length=1, description="Candidate numbers (or ids), best first")


def tool_lines(names: list[str]) -> str:
    """The tool catalogue for the prompt, from the tools' own schemas: name(arguments): what it does."""
    lines = []
    for name in names:
        spec = TOOLS[name]
        fields = [f for f in spec.input_model.model_fields if f not in HIDDEN_ARGUMENTS]
        lines.append(f"- {name}({', '.join(fields)}): {spec.description.split('. ')[0].rstrip('.')}.")
    return "\n".join(lines)


def item_line(item: ScoredItem, primary: str | None) -> str:
    year = f" ({item.year})" if item.year is not None and str(item.year) not in item.title else ""
    values = ", ".join(item.attributes.get(primary, [])) if primary else ""
    return f"{item.title}{year}" + (f" - {values}" if values else "")


def describe(result: ToolResult, primary: str | None) -> str:
    if result.error is not None:
        valid = f" Valid values: {', '.join(result.error.valid[:25])}." if result.error.valid else ""
        return f"error: {result.error.message}.{valid}"
    output = result.output
    if not isinstance(output, ItemsOutput):
        return result.to_message()
    lines = [f"{i}. {item_line(item, primary)}" for i, item in enumerate(output.items[:SHOWN], start=1)]
    more = len(output.items) - SHOWN
    return "\n".join(lines + ([f"... and {more} more"] if more > 0 else []))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value in (None, "") else [value]


def _narrow(given: Any, imposed: list[str] | None) -> Any:
    """An "any of" list under a hard constraint: the given values the constraint allows, or the
    constraint's own values where none of the given ones is allowed."""
    if not imposed:
        return given
    allowed = {normalize(v) for v in imposed}
    kept = [v for v in _as_list(given) if isinstance(v, str) and normalize(v) in allowed]
    return kept or list(imposed)


def _union(given: Any, imposed: list[str] | None) -> Any:
    if not imposed:
        return given
    return list(dict.fromkeys([*_as_list(given), *imposed]))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def impose(name: str, arguments: dict[str, Any], request: RecommendRequest) -> dict[str, Any]:
    """The arguments a tool call is made with: the LLM's (or a planned call's) choice without the
    agent-owned ones, plus the request's subject and, for the retrieval tools, its exclusions and
    hard constraints. Constraints only narrow: genres intersect (or are replaced), exclusions
    add up, a year range can only shrink."""
    spec = TOOLS[name]
    out = {k: v for k, v in arguments.items() if k not in AGENT_OWNED}
    if issubclass(spec.input_model, Filters):
        c = request.constraints or Filters()
        excluded = [*request.exclude, *(c.exclude_ids or [])]
        if excluded:
            out["exclude_ids"] = _union(excluded, _as_list(out.get("exclude_ids")))
        out["genres"] = _narrow(out.get("genres"), c.genres)
        out["exclude_genres"] = _union(out.get("exclude_genres"), c.exclude_genres)
        if c.year_from is not None or c.year_to is not None:
            given_from, given_to = _int(out.get("year_from")), _int(out.get("year_to"))
            low = max((y for y in (given_from, c.year_from) if y is not None), default=None)
            high = min((y for y in (given_to, c.year_to) if y is not None), default=None)
            if low is not None and high is not None and low > high:  # the LLM's range left the allowed one
                low, high = c.year_from, c.year_to
            out["year_from"], out["year_to"] = low, high
        for key, combine in (("attributes", _narrow), ("exclude_attributes", _union)):
            imposed = getattr(c, key) or {}
            if imposed:
                given = out.get(key) if isinstance(out.get(key), dict) else {}
                out[key] = {**given, **{kind: combine(given.get(kind), values) for kind, values in imposed.items()}}
        out = {k: v for k, v in out.items() if v is not None}
    if "user_id" in spec.input_model.model_fields:
        out.update(request.subject())
    return out


def _llm_events(node: str, result: StructuredResult[Any]) -> list[TraceEvent]:
    return [
        TraceEvent(
            node=node,
            kind="llm",
            seconds=attempt.reply.seconds if attempt.reply else 0.0,
            messages=attempt.messages,
            reply=attempt.reply.text if attempt.reply else None,
            prompt_tokens=attempt.reply.prompt_tokens if attempt.reply else 0,
            completion_tokens=attempt.reply.completion_tokens if attempt.reply else 0,
            cached=attempt.reply.cached if attempt.reply else False,
            error=attempt.error,
            valid_first_try=result.first_valid if index == 0 else None,
        )
        for index, attempt in enumerate(result.attempts)
    ]


def merge(pool: dict[str, Candidate], items: list[ScoredItem], probe: bool) -> dict[str, Candidate]:
    """The pool with `items` added: a known item gains the new scores and provenance (and a
    probe count if an LLM-chosen call found it again)."""
    merged = dict(pool)
    for item in items:
        known = merged.get(item.id)
        if known is None:
            merged[item.id] = Candidate(item=item, probes=int(probe))
            continue
        combined = known.item.model_copy(update={
            "scores": {**known.item.scores, **item.scores},
            "provenance": [*known.item.provenance, *item.provenance],
        })
        merged[item.id] = Candidate(item=combined, probes=known.probes + int(probe))
    return merged


class Nodes:
    def __init__(self, llm: LLM, toolbox: Toolbox, config: AgentConfig) -> None:
        unknown = [t for t in config.tools if t not in TOOLS]
        if unknown:
            raise ValueError(f"unknown tools {unknown}; known: {', '.join(TOOLS)}")
        self.llm, self.toolbox, self.config = llm, toolbox, config
        self.domain = domain_of(toolbox.dataset.name)
        self.primary = toolbox.primary_attribute
        values = list(toolbox.attribute_items.get(self.primary, {})) if self.primary else []
        self.example_value = values[0] if values else ""
        self.system = render(self.domain, "system", tools=tool_lines(config.tools), values=", ".join(values) or "(none)")
        self.plan_model = plan_step_model(tuple(config.tools))

    # --- helpers -------------------------------------------------------------------------

    def _tool(self, node: str, name: str, arguments: dict[str, Any]) -> tuple[ToolResult, TraceEvent]:
        result = call_tool(self.toolbox, name, arguments)
        event = TraceEvent(
            node=node,
            kind="tool",
            seconds=result.elapsed_ms / 1000,
            tool=name,
            arguments=arguments,
            observation=describe(result, self.primary),
            error=result.error.message if result.error else None,
        )
        return result, event

    def _ask(self, messages: list[ChatMessage], model: type[BaseModel]) -> StructuredResult[Any]:
        c = self.config
        return ask_structured(
            self.llm, messages, model, retries=c.retries, max_tokens=c.max_tokens,
            temperature=c.temperature, seed=c.seed, timeout=c.llm_timeout_s,
        )

    # --- nodes ---------------------------------------------------------------------------

    def profile(self, state: AgentState) -> dict[str, Any]:
        request = state["request"]
        profile, profile_event = self._tool("profile", "user_profile", {**request.subject(), "recent": 8, "top_values": 5})
        if profile.error is not None:
            raise RecommendError(profile.error.message)
        pool: dict[str, Candidate] = {}
        events = [profile_event]
        backbone: list[str] = []
        # the pool starts from every backbone variant's own top candidates (the default first)
        for variant in self.toolbox.variants:
            seed, seed_event = self._tool("profile", "retrieve", impose("retrieve", {"k": self.config.seed_k, "variant": variant}, request))
            if seed.error is not None or not isinstance(seed.output, ItemsOutput):
                raise RecommendError(f"the backbone could not rank for this user: {seed.error.message if seed.error else 'no output'}")
            events.append(seed_event)
            backbone = backbone or [item.id for item in seed.output.items]
            pool = merge(pool, seed.output.items, probe=False)
        for planned in request.probes:  # calls the caller asked for, made like the LLM's probes
            if planned.name not in self.config.tools:
                events.append(TraceEvent(node="profile", kind="fallback", tool=planned.name, error=f"planned call to {planned.name!r} refused: not an allowed tool"))
                continue
            result, event = self._tool("profile", planned.name, self._probe_arguments(planned.name, planned.arguments, request))
            events.append(event)
            if isinstance(result.output, ItemsOutput):
                pool = merge(pool, result.output.items, probe=True)
        out = profile.output
        primary = self.primary or ""
        recent = "\n".join(f"- {item_line(ScoredItem(**h.model_dump(include={'id', 'title', 'year', 'attributes'})), self.primary)}" for h in out.recent_items)
        plan = render(
            self.domain, "plan",
            recent=recent or "(nothing yet)",
            top_values=", ".join(f"{v.value} ({v.count})" for v in out.attributes.get(primary, [])) or "-",
            recent_values=", ".join(v.value for v in out.recent_attributes.get(primary, [])) or "-",
            request=f"\nWhat you ask for now: {request.request}\n" if request.request else "",
            round=1, max_rounds=self.config.max_rounds, example_value=self.example_value,
        )
        return {
            "profile": out,
            "pool": pool,
            "backbone": backbone,
            "messages": [ChatMessage(role="system", content=self.system), ChatMessage(role="user", content=plan)],
            "round": 0,
            "step": None,
            "finished": self.config.max_rounds == 0,
            "trace": events,
        }

    def plan(self, state: AgentState) -> dict[str, Any]:
        result = self._ask(state["messages"], self.plan_model)
        events = _llm_events("plan", result)
        if not result.ok:
            fallback = TraceEvent(node="plan", kind="fallback", error="no usable plan step: assembling from the pool so far")
            return {"step": None, "finished": True, "trace": [*events, fallback]}
        step = result.value.model_dump()
        reply = ChatMessage(role="assistant", content=json.dumps(step, ensure_ascii=False))
        if reply.content in {m.content for m in state["messages"] if m.role == "assistant"}:
            # a repeated call would only return the same items again: the search has converged
            repeat = TraceEvent(node="plan", kind="fallback", error="the same tool call again: finishing")
            return {"step": None, "finished": True, "trace": [*events, repeat]}
        return {"step": step, "finished": step["name"] == FINISH, "messages": [*state["messages"], reply], "trace": events}

    def _probe_arguments(self, name: str, arguments: dict[str, Any], request: RecommendRequest) -> dict[str, Any]:
        """A probe's arguments as sent: k capped at probe_k; the request's subject, exclusions and
        constraints imposed."""
        arguments = impose(name, arguments, request)
        requested_k = arguments.get("k")
        arguments["k"] = min(requested_k, self.config.probe_k) if isinstance(requested_k, int) and requested_k > 0 else self.config.probe_k
        return arguments

    def act(self, state: AgentState) -> dict[str, Any]:
        request, step = state["request"], state["step"]
        assert step is not None
        result, event = self._tool("act", step["name"], self._probe_arguments(step["name"], step["arguments"], request))

        pool = merge(state["pool"], result.output.items, probe=True) if isinstance(result.output, ItemsOutput) else state["pool"]
        done = state["round"] + 1
        observation = render(
            self.domain, "observe", tool=step["name"], result=event.observation,
            round=min(done + 1, self.config.max_rounds), max_rounds=self.config.max_rounds,
        )
        return {
            "pool": pool,
            "round": done,
            "messages": [*state["messages"], ChatMessage(role="user", content=observation)],
            "trace": [event],
        }

    def assemble(self, state: AgentState) -> dict[str, Any]:
        started = time.perf_counter()
        ids = list(state["pool"])
        variants = list(self.toolbox.variants) if self.config.ensemble else [self.toolbox.default_variant]
        events: list[TraceEvent] = []
        z = np.zeros(len(ids))
        for variant in variants:
            ranked, event = self._tool("assemble", "rank", {**state["request"].subject(), "candidates": ids, "by": "model", "variant": variant})
            events.append(event)
            if not isinstance(ranked.output, ItemsOutput):
                # the pool came from the backbones themselves; the seed order is the fallback
                return {"final": state["backbone"], "scores": {}, "trace": events}
            score = {item.id: next(iter(item.scores.values())) for item in ranked.output.items}
            values = np.array([score[i] for i in ids])
            z += (values - values.mean()) / (values.std() or 1.0)
        bonus = self.config.probe_bonus if self.config.assembly == "fused" else 0.0
        fused = {i: float(z[n]) + bonus * (state["pool"][i].probes > 0) for n, i in enumerate(ids)}
        order = sorted(ids, key=lambda i: -fused[i])
        if self.config.assembly == "llm":
            order, llm_events = self._rerank(state, order)
            events += llm_events
        note = TraceEvent(node="assemble", kind="assembly", seconds=time.perf_counter() - started, observation=f"{self.config.assembly}: {len(order)} ordered")
        return {"final": order, "scores": fused, "trace": [*events, note]}

    def _rerank(self, state: AgentState, order: list[str]) -> tuple[list[str], list[TraceEvent]]:
        shown = order[: self.config.rerank_candidates]
        pool = state["pool"]
        candidates = "\n".join(f"{n}. {item_line(pool[i].item, self.primary)}" for n, i in enumerate(shown, start=1))
        recent = "; ".join(h.title for h in state["profile"].recent_items[:5])
        prompt = render(self.domain, "rerank", recent=recent, candidates=candidates, k=self.config.k)
        result = self._ask([ChatMessage(role="user", content=prompt)], RerankReply)
        events = _llm_events("assemble", result)
        if not result.ok:
            return order, [*events, TraceEvent(node="assemble", kind="fallback", error="no usable ranking: backbone order kept")]
        # numbers map to candidates; ids are taken as given and checked in validate
        picked = [shown[p - 1] if isinstance(p, int) and 1 <= p <= len(shown) else str(p) for p in result.value.items]
        return picked, events

    def validate(self, state: AgentState) -> dict[str, Any]:
        """Exactly k items, all from the pool (never an item no tool returned), none from the
        history or the exclusions, no duplicates; what is missing comes from the backbone."""
        k, pool, request = self.config.k, state["pool"], state["request"]
        history = self.toolbox.history(request.user_id, request.history)
        assert history is not None  # the profile node already refused an unknown user
        excluded = set(request.exclude) | {self.toolbox.dataset.item(int(d)).id for d in history}
        chosen: list[str] = []
        dropped: list[str] = []
        for item_id in state["final"]:
            if item_id in pool and item_id not in excluded and item_id not in chosen:
                chosen.append(item_id)
            else:
                dropped.append(item_id)
        chosen = chosen[:k]
        filled = 0
        for item_id in [*state["backbone"], *pool]:
            if len(chosen) >= k:
                break
            if item_id not in chosen and item_id not in excluded:
                chosen.append(item_id)
                filled += 1
        detail = f"{len(chosen)} items; {filled} completed from the backbone"
        if dropped:
            detail += f"; dropped {len(dropped)} not in the pool or repeated: {dropped[:10]}"
        event = TraceEvent(node="validate", kind="validation", observation=detail, error=None if len(chosen) == k else f"only {len(chosen)} items could be found")
        return {"final": chosen, "backfilled": filled, "trace": [event]}
