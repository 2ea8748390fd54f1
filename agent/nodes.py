"""The graph's nodes.

    tools mode: profile -> seed -> plan -> act -> (plan | assemble) -> validate
    menu mode:  profile -> seed -> menu -> choose -> gather -> assemble -> validate

Each node reads the state and returns the keys it changes. In tools mode the LLM chooses tools
and their attribute arguments, and a probe that cannot change the list is corrected or dropped
(agent.probes); in menu mode the agent drafts and runs a menu of intents (agent.intents) and the
LLM's option scores say how much each counts. The agent owns who the user is (user_id / history
are always overwritten with the request's), how many items a probe adds, and what may end up in
the list. What the tools return goes on the candidate pool (`agent.pool`), each find with its
role.
"""

from __future__ import annotations

import json
import time
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from agent.assembly import ASSEMBLY_FILE, LearnedAssembly, item_signals
from agent.intents import IntentWeight, MenuEntry, draft_menu
from agent.llm.base import LLM, ChatMessage, LLMError, LLMTimeout
from agent.llm.parsing import StructuredResult, ask_structured
from agent.llm.scoring import OptionScorer, debias, menu_messages, position_prior
from agent.pool import Pool, Role
from agent.prior import PRIOR_FILE, IntentPrior
from agent.probes import call_key, trim_broad
from agent.prompts import domain_of, render
from agent.state import AGENT_OWNED, UNSHOWN, AgentConfig, AgentState, PlannedCall, RecommendRequest, TraceEvent
from tools.constraints import Filters
from tools.profile import UserProfileOutput
from tools.registry import TOOLS, ToolResult, call_tool
from tools.schemas import ItemsOutput
from tools.titles import item_line
from tools.toolbox import Toolbox, normalize

FINISH = "finish"
# Arguments the LLM is not offered in the tool catalogue: the agent sets them.
HIDDEN_FROM_LLM = {*UNSHOWN, "attributes", "exclude_attributes", "space"}
SHOWN = 5  # items per observation: small models read short prompts best
# latest items the menu prompt lists: every token of the user's part is evaluated once per
# recommendation (issue 10's 3 s target), and the intents name the rest
MENU_RECENT = 5
CONTENT_FREE = "N/A"  # the option text of the menu that measures the LLM's position prior


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
        fields = [f for f in spec.input_model.model_fields if f not in HIDDEN_FROM_LLM]
        lines.append(f"- {name}({', '.join(fields)}): {spec.description.split('. ')[0].rstrip('.')}.")
    return "\n".join(lines)


def describe(result: ToolResult, primary: str | None) -> str:
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
        # the same for every user, so that an embedded model evaluates it once (prefix reuse)
        self.menu_system = render(self.domain, "menu_system")
        self._position_priors: dict[int, list[float]] = {}  # menu size -> the LLM's log-prior per position
        run = toolbox.run_dir
        # loaded for any agent: a request may ask for it (RecommendRequest.menu_choice)
        self.prior = IntentPrior.load(run) if run and (run / PRIOR_FILE).is_file() else None
        self.learned: LearnedAssembly | None = None
        if config.assembly == "learned":
            if run is None or not (run / ASSEMBLY_FILE).is_file():
                raise ValueError(f"assembly 'learned' needs {ASSEMBLY_FILE} in the run folder: `toolrec intents fit-assembly`")
            self.learned = LearnedAssembly.load(run)
            missing = set(self.learned.variants) - set(toolbox.variants)
            if missing:
                raise ValueError(f"{ASSEMBLY_FILE} reads variants {sorted(missing)} that this toolbox lacks (--variant)")

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
            code="tool_error" if result.error else None,
        )
        return result, event

    def _probe(
        self, node: str, pool: Pool, call: PlannedCall, request: RecommendRequest, role: Role
    ) -> tuple[Pool, ToolResult, TraceEvent]:
        """One probe (an LLM-chosen or a planned call) made under the request's rules; its items
        join the pool under `role`."""
        result, event = self._tool(node, call.name, self._probe_arguments(call.name, call.arguments, request))
        if isinstance(result.output, ItemsOutput):
            pool = pool.add(result.output.items, role)
        return pool, result, event

    def _ask(self, messages: list[ChatMessage], model: type[BaseModel]) -> StructuredResult[Any]:
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

    # --- nodes ---------------------------------------------------------------------------

    def profile(self, state: AgentState) -> dict[str, Any]:
        """Who the user is (the user_profile tool), and the plan prompt built from it."""
        request = state["request"]
        profile, event = self._tool("profile", "user_profile", {**request.subject(), "recent": 8, "top_values": 5})
        if profile.error is not None:
            raise RecommendError(profile.error.message)
        out = profile.output
        messages: list[ChatMessage] = []
        if self.config.planner == "tools":
            plan = render(
                self.domain, "plan", **self._profile_values(out, request),
                recent_values=", ".join(v.value for v in out.recent_attributes.get(self.primary or "", [])) or "-",
                round=1, max_rounds=self.config.max_rounds, example_value=self.example_value,
            )  # fmt: skip
            messages = [ChatMessage(role="system", content=self.system), ChatMessage(role="user", content=plan)]
        return {
            "profile": out,
            "messages": messages,
            "round": 0,
            "step": None,
            "calls": [],
            "finished": self.config.max_rounds == 0,
            "trace": [event],
        }

    def _profile_values(self, profile: UserProfileOutput, request: RecommendRequest, recent: int | None = None) -> dict[str, str]:
        """What the plan and menu prompts say about the user: the `recent` latest items (all the
        profile holds by default), favourite values, the request."""
        primary = self.primary or ""
        lines = [f"- {item_line(h.title, h.year, h.attributes.get(primary, []))}" for h in profile.recent_items[:recent]]
        recent_text = "\n".join(lines)
        return {
            "recent": recent_text or "(nothing yet)",
            "top_values": ", ".join(f"{v.value} ({v.count})" for v in profile.attributes.get(primary, [])) or "-",
            "request": f"\nWhat you ask for now: {request.request}\n" if request.request else "",
        }

    def seed(self, state: AgentState) -> dict[str, Any]:
        """The pool starts from every backbone variant's own top candidates (the default first),
        plus what the caller's planned calls find."""
        request = state["request"]
        pool = Pool()
        events: list[TraceEvent] = []
        backbone: list[str] = []
        for variant in self.toolbox.variants:
            seed, event = self._tool("seed", "retrieve", impose("retrieve", {"k": self.config.seed_k, "variant": variant}, request))
            if seed.error is not None or not isinstance(seed.output, ItemsOutput):
                raise RecommendError(f"the backbone could not rank for this user: {seed.error.message if seed.error else 'no output'}")
            events.append(event)
            backbone = backbone or [item.id for item in seed.output.items]
            pool = pool.add(seed.output.items, "seed")
        for planned in request.probes:  # calls the caller asked for, made like the LLM's probes
            if planned.name not in self.config.tools:
                refusal = f"planned call to {planned.name!r} refused: not an allowed tool"
                events.append(TraceEvent(node="seed", kind="fallback", code="refused_call", tool=planned.name, error=refusal))
                continue
            pool, _, event = self._probe("seed", pool, planned, request, "asked")
            events.append(event)
        return {"pool": pool, "backbone": backbone, "trace": events}

    def plan(self, state: AgentState) -> dict[str, Any]:
        result = self._ask(state["messages"], self.plan_model)
        events = _llm_events("plan", result)
        if not result.ok:
            timed_out = bool(result.attempts) and result.attempts[-1].timed_out
            fallback = TraceEvent(
                node="plan", kind="fallback", code="timeout" if timed_out else "unusable_reply",
                error="no usable plan step: assembling from the pool so far",
            )  # fmt: skip
            return {"step": None, "finished": True, "trace": [*events, fallback]}
        step = PlannedCall.model_validate(result.value.model_dump())
        reply = ChatMessage(role="assistant", content=json.dumps(step.model_dump(), ensure_ascii=False))
        if reply.content in {m.content for m in state["messages"] if m.role == "assistant"}:
            # a repeated call would only return the same items again: the search has converged
            repeat = TraceEvent(node="plan", kind="fallback", code="repeated_call", error="the same tool call again: finishing")
            return {"step": None, "finished": True, "trace": [*events, repeat]}
        return {"step": step, "finished": step.name == FINISH, "messages": [reply], "trace": events}

    def _probe_arguments(self, name: str, arguments: dict[str, Any], request: RecommendRequest) -> dict[str, Any]:
        """A probe's arguments as sent: k capped at probe_k; the request's subject, exclusions and
        constraints imposed."""
        arguments = impose(name, arguments, request)
        requested_k = arguments.get("k")
        arguments["k"] = min(requested_k, self.config.probe_k) if isinstance(requested_k, int) and requested_k > 0 else self.config.probe_k
        return arguments

    def act(self, state: AgentState) -> dict[str, Any]:
        """The plan step's call under the rules of agent.probes: a constraint admitting most of the
        catalogue is narrowed to the user's top values before it is sent (`broad_call`; the LLM is
        told); a call sent before is not sent again and ends the search, which has converged
        (`repeated_call`); a call whose items are all in the pool already adds none of them
        (`known_items`): it could not change the list, and the LLM is told it found nothing new."""
        step = state["step"]
        assert step is not None
        request, pool, calls = state["request"], state["pool"], state.get("calls", [])
        done = state["round"] + 1
        arguments, notes = trim_broad(self.toolbox, state["profile"], self._probe_arguments(step.name, step.arguments, request))
        key = call_key(step.name, arguments)
        if key in calls:
            repeat = TraceEvent(
                node="act", kind="guard", code="repeated_call", tool=step.name, arguments=arguments,
                error="a call sent before: not sent again, finishing",
            )  # fmt: skip
            return {"round": done, "finished": True, "trace": [repeat]}
        result, event = self._tool("act", step.name, arguments)
        found = result.output.items if isinstance(result.output, ItemsOutput) else []
        # one code per probe, so that each refused probe counts once: dropped outranks corrected
        if found and all(item.id in pool for item in found):
            event.code, event.observation = "known_items", f"nothing new: all {len(found)} items are among the candidates already"
        else:
            pool = pool.add(found, "probe")
            event.code = "broad_call" if notes and event.code is None else event.code
        if notes:
            event.observation = f"{'; '.join(notes)}\n{event.observation}"
        observation = render(
            self.domain, "observe", tool=step.name, result=event.observation,
            round=min(done + 1, self.config.max_rounds), max_rounds=self.config.max_rounds,
        )  # fmt: skip
        return {
            "pool": pool,
            "round": done,
            "calls": [*calls, key],
            "finished": done >= self.config.max_rounds,
            "messages": [ChatMessage(role="user", content=observation)],
            "trace": [event],
        }

    # --- menu mode -----------------------------------------------------------------------

    def menu(self, state: AgentState) -> dict[str, Any]:
        """This user's intent menu, every intent run at once (a tool call costs about 2 ms), so the
        LLM is shown only intents that found something: one whose call fails or finds nothing
        leaves the menu, and so does one that the request's rules turn into an earlier one's call."""
        request = state["request"]
        entries: list[MenuEntry] = []
        events: list[TraceEvent] = []
        sent: set[str] = set()
        for intent in draft_menu(state["profile"], self.toolbox, self.config.tools, self.domain):
            arguments = self._probe_arguments(intent.tool, intent.arguments, request)
            key = call_key(intent.tool, arguments)
            if key in sent:
                continue
            sent.add(key)
            result, event = self._tool("menu", intent.tool, arguments)
            events.append(event)
            if isinstance(result.output, ItemsOutput) and result.output.items:
                entries.append(MenuEntry(intent=intent, arguments=arguments, items=result.output.items))
        return {"menu": entries, "trace": events}

    def choose(self, state: AgentState) -> dict[str, Any]:
        """How much each intent counts for this user: one option-scoring call, the LLM reading the
        menu as the user (probabilities from the likelihood of each option's number, averaged over
        orderings so that position bias cancels). Uniform weights, traced as `uniform_weights`,
        where the call fails or times out, the LLM cannot score, or there is nothing to choose."""
        entries = state["menu"]
        uniform = [1.0 / len(entries)] * len(entries) if entries else []
        choice = state["request"].menu_choice or self.config.menu_choice
        if choice == "uniform":
            return {"weights": uniform, "trace": [self._choice(entries, uniform, None, "uniform weights by setting: no LLM call")]}
        why = None
        if not entries:
            why = "no intent on the menu found anything"
        elif choice == "prior":
            if self.prior is not None:
                weights = self.prior.weights(state["profile"], entries, self.primary or "")
                return {"weights": weights, "trace": [self._choice(entries, weights, None, f"the prior fit on {self.prior.users} users")]}
            why = f"no intent prior in the run folder ({PRIOR_FILE}: `toolrec intents fit-prior`)"
        elif len(entries) < 2:
            why = f"{len(entries)} intent(s) on the menu: nothing to choose"
        elif not isinstance(self.llm, OptionScorer):
            why = f"{self.llm.name} cannot score options"
        if why is not None:
            return {"weights": uniform, "trace": [self._choice(entries, uniform, "uniform_weights", why)]}
        profile_part = render(self.domain, "menu", **self._profile_values(state["profile"], state["request"], recent=MENU_RECENT))
        messages = [ChatMessage(role="system", content=self.menu_system), ChatMessage(role="user", content=profile_part)]
        options = [e.intent.label for e in entries]
        try:
            scores = self.llm.score_options(messages, options, orderings=self.config.orderings, timeout=self.config.llm_timeout_s)
            if self.config.debias_positions:
                scores = debias(scores, self._position_prior(len(options)))
        except LLMError as exc:
            failed = TraceEvent(
                node="choose", kind="llm", code="timeout" if isinstance(exc, LLMTimeout) else "scoring_failed",
                messages=messages, error=f"{type(exc).__name__}: {exc}", valid_first_try=False,
            )  # fmt: skip
            return {"weights": uniform, "trace": [failed, self._choice(entries, uniform, "uniform_weights", "option scoring failed")]}
        shown = menu_messages(messages, options, scores.orderings[0].order) if scores.orderings else messages
        call = TraceEvent(
            node="choose", kind="llm", seconds=scores.seconds, messages=shown, reply=f"{scores.best + 1}. {options[scores.best]}",
            prompt_tokens=sum(o.prompt_tokens for o in scores.orderings), tokens_reused=scores.tokens_reused,
            cached=scores.cached, valid_first_try=True,
        )  # fmt: skip
        weights = scores.probabilities()
        debiased = ", less the position prior" if self.config.debias_positions else ""
        note = f"{scores.method} over {len(scores.orderings)} ordering(s){debiased}"
        return {"weights": weights, "trace": [call, self._choice(entries, weights, None, note)]}

    def _position_prior(self, n: int) -> list[float]:
        """The LLM's log-probability of each of n positions where nothing else can guide it: a
        user with no history and n alike options. Measured once per menu size."""
        if n not in self._position_priors:
            blank = render(self.domain, "menu", recent="(nothing yet)", top_values="-", request="")
            messages = [ChatMessage(role="system", content=self.menu_system), ChatMessage(role="user", content=blank)]
            alike = self.llm.score_options(messages, [CONTENT_FREE] * n, orderings=1, timeout=self.config.llm_timeout_s)
            self._position_priors[n] = position_prior(alike)
        return self._position_priors[n]

    @staticmethod
    def _choice(entries: list[MenuEntry], weights: list[float], code: Literal["uniform_weights"] | None, note: str) -> TraceEvent:
        intents = [
            IntentWeight(kind=e.intent.kind, text=e.intent.text, probability=round(w, 4)) for e, w in zip(entries, weights, strict=True)
        ]
        return TraceEvent(node="choose", kind="choice", code=code, observation=note, error=note if code else None, intents=intents)

    def gather(self, state: AgentState) -> dict[str, Any]:
        """Every intent's items join the pool as probes crediting that intent, each counting its
        probability relative to the most wanted intent's (the fusion's bonus scales with it)."""
        pool, weights = state["pool"], state["weights"]
        top = max(weights, default=0.0)
        for entry, probability in zip(state["menu"], weights, strict=True):
            weight = probability / top if top > 0 else 1.0
            pool = pool.add(entry.items, "probe", intent=entry.intent.text, kind=entry.intent.kind, weight=weight)
        return {"pool": pool, "round": 1}

    def variant_scores(self, state: AgentState, variants: list[str]) -> tuple[dict[str, dict[str, float]] | None, list[TraceEvent]]:
        """Each variant's score of every pool item (the rank tool), or None where ranking failed."""
        events: list[TraceEvent] = []
        scores: dict[str, dict[str, float]] = {}
        for variant in variants:
            ranked, event = self._tool(
                "assemble", "rank", {**state["request"].subject(), "candidates": state["pool"].ids(), "by": "model", "variant": variant}
            )
            events.append(event)
            if not isinstance(ranked.output, ItemsOutput):
                return None, events
            key = f"model:{self.toolbox.variant(variant)}"
            scores[variant] = {item.id: item.scores[key] for item in ranked.output.items}
        return scores, events

    def assemble(self, state: AgentState) -> dict[str, Any]:
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
            order, llm_events = self._rerank(state, order)
            events += llm_events
        # what the person asked for by name leads; their history orders within it
        led = pool.lead(fused, self.config.lead_taste)
        if led:
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
        shown = order[: self.config.rerank_candidates]
        pool = state["pool"]
        items = [pool[i].item for i in shown]
        candidates = "\n".join(
            f"{n}. {item_line(it.title, it.year, it.attributes.get(self.primary or '', []))}" for n, it in enumerate(items, start=1)
        )
        recent = "; ".join(h.title for h in state["profile"].recent_items[:5])
        prompt = render(self.domain, "rerank", recent=recent, candidates=candidates, k=self.config.k)
        result = self._ask([ChatMessage(role="user", content=prompt)], RerankReply)
        events = _llm_events("assemble", result)
        if not result.ok:
            return order, [
                *events,
                TraceEvent(node="assemble", kind="fallback", code="no_ranking", error="no usable ranking: backbone order kept"),
            ]
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
        done = pool.complete(state["final"], k, backbone=state["backbone"], excluded=excluded)
        detail = f"{len(done.items)} items; {done.filled} completed from the backbone"
        if done.dropped:
            detail += f"; dropped {len(done.dropped)} not in the pool or repeated: {done.dropped[:10]}"
        short = len(done.items) < k
        event = TraceEvent(
            node="validate", kind="validation", observation=detail,
            code="incomplete" if short else None, error=f"only {len(done.items)} items could be found" if short else None,
        )  # fmt: skip
        return {"final": done.items, "backfilled": done.filled, "trace": [event]}
