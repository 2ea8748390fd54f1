"""The agent's benchmarks: `summarise` for `toolrec bench agent` (what one recommendation costs
with a given LLM), `run_bench` for `toolrec bench serve` (concurrent conversations against
the HTTP server over loopback), and `chat_bench` for `toolrec bench chat` (seconds per turn, and
whether "like X" lists are like X, beside the backbone's own list).

The server runs in process (uvicorn on a free 127.0.0.1 port) over a real toolbox with a
scripted LLM, so the numbers measure the service (HTTP, sessions, the agent graph, the tools),
not a language model; or it is a server started apart (`toolrec serve`, any number of workers,
any session store), reached at its URL (`bench_server`). Each session is a short conversation of its own (a known user, or a cold
start from a title; then its own genre exclusion, "older films", "more like the second one",
"not that one", ...); sessions run concurrently, bounded in number and time. Afterwards every
session's stored state is checked against what that session alone said: its user, its
exclusion, its liked title, nothing shown twice, no excluded genre in any later list. A
session that sees another's state counts as an isolation violation (and an error).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
from pydantic import BaseModel, Field

from agent.chat import Conversation, ConversationConfig
from agent.llm.base import LLM, ChatMessage, LLMError, LLMReply, uses_llm
from agent.llm.scoring import OptionScorer, OptionScores
from agent.llm.scripted import ScriptedLLM
from agent.probes import call_key
from agent.recommend import Agent, AgentFactory
from agent.request import shown_arguments
from agent.runtime import PROBE_BONUS, agent_config, shared_agent_factory
from agent.serve.app import ServerSettings, create_app, running
from agent.serve.openai import Health
from agent.state import AgentConfig, Recommendation, TraceCode
from tools.registry import call_tool
from tools.schemas import ItemsOutput
from tools.toolbox import TEXT_SPACE, Toolbox

FINISH = '{"name": "finish", "arguments": {}}'
MAX_SESSIONS = 256
MAX_TURNS = 12


# Trace codes of a probe refused because it could not change the list (corrected or dropped).
DEGENERATE: tuple[TraceCode, ...] = ("broad_call", "known_items")
PROBE_NODES = ("act", "menu")


def _share(part: int, whole: int) -> float:
    return round(part / whole, 3) if whole else 0.0


def _distinct_probes(rec: Recommendation) -> set[str]:
    """The distinct calls whose items joined the pool (a dropped probe's did not)."""
    return {
        call_key(e.tool or "", shown_arguments(e.arguments or {}))
        for e in rec.trace
        if e.kind == "tool" and e.node in PROBE_NODES and e.code in (None, "broad_call")
    }


def summarise(recommendations: list[Recommendation]) -> dict[str, Any]:
    """`toolrec bench agent`'s figures over a sample of recommendations. A probe attempt is a
    call the planner proposed: sent (a tool event of `act` or `menu`) or refused as a repeat."""
    n = len(recommendations)
    llm_events = [e for r in recommendations for e in r.llm_events]
    firsts = [e.valid_first_try for e in llm_events if e.valid_first_try is not None]
    plan_firsts = [e.valid_first_try for e in llm_events if e.node == "plan" and e.valid_first_try is not None]
    events = [e for r in recommendations for e in r.trace]
    sent = [e for e in events if e.kind == "tool" and e.node in PROBE_NODES]
    repeated = sum(e.code == "repeated_call" for e in events)
    attempts = len(sent) + repeated
    seconds = [r.seconds for r in recommendations]
    distinct = [len(_distinct_probes(r)) for r in recommendations]
    choices = [e for e in events if e.kind == "choice" and e.intents]
    top = Counter(max(e.intents or [], key=lambda i: i.probability).kind for e in choices if e.code is None)
    return {
        "recommendations": n,
        "seconds_per_recommendation": round(statistics.mean(seconds), 3),
        "seconds_p50": round(statistics.median(seconds), 3),
        "seconds_p95": round(_percentile(seconds, 95), 3),
        "seconds_max": round(max(seconds), 3),
        "llm_calls_per_recommendation": round(len(llm_events) / n, 3),
        "tokens_per_recommendation": round(statistics.mean(r.tokens for r in recommendations), 1),
        "prompt_tokens_evaluated_per_call": round(statistics.mean(e.tokens_evaluated for e in llm_events), 1) if llm_events else 0.0,
        "prompt_tokens_reused_per_call": round(statistics.mean(e.tokens_reused for e in llm_events), 1) if llm_events else 0.0,
        "valid_first_try_share": _share(sum(firsts), len(firsts)),
        "valid_plan_share": _share(sum(plan_firsts), len(plan_firsts)),
        "probe_attempts_per_recommendation": round(attempts / n, 3),
        "degenerate_probe_share": _share(sum(e.code in DEGENERATE for e in events), attempts),
        "repeated_call_share": _share(repeated, attempts),
        "searches_ended_by_repeat_share": _share(sum(r.has("repeated_call") for r in recommendations), n),
        "distinct_intents_per_user": round(statistics.mean(distinct), 3),
        "distinct_reasons_per_list": round(statistics.mean(len({i.reason for i in r.items}) for r in recommendations), 3),
        "uniform_weights_share": _share(sum(r.has("uniform_weights") for r in recommendations), n),
        "top_intent_kinds": dict(top.most_common()),
        "backfilled_share": _share(sum(r.backfilled > 0 for r in recommendations), n),
        "backfilled_items_per_list": round(statistics.mean(r.backfilled for r in recommendations), 3),
        "tool_calls_per_recommendation": round(len(sent) / n, 3),
    }


def scripted_factory(toolbox: Toolbox, config: AgentConfig) -> AgentFactory:
    """A fresh scripted agent per turn: an (empty) intent reading, one retrieve probe, finish."""
    genres = list(toolbox.attribute_items.get(toolbox.primary_attribute or "", {}))
    probe = json.dumps({"name": "retrieve", "arguments": {"genres": genres[:3]} if genres else {}})

    def factory() -> Agent:
        return Agent(ScriptedLLM(["{}", probe, FINISH, FINISH]), toolbox, config)

    return factory


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def _plan(toolbox: Toolbox, index: int) -> dict[str, Any]:
    """Session `index`'s own user (or title) and genre, so that a leak would show."""
    genres = [g for g in toolbox.attribute_items.get(toolbox.primary_attribute or "", {}) if g != "unknown"]
    popular = [int(d) for d in toolbox.popularity.argsort()[::-1][:200] if d > 0]
    genre = genres[index % len(genres)] if genres else None
    if index % 2 == 0:
        return {"user_id": toolbox.dataset.user_ids[index % len(toolbox.dataset.user_ids)], "title": None, "genre": genre}
    item = toolbox.dataset.item(popular[(index * 7) % len(popular)])
    title = toolbox.spoken_title(item.id)
    return {"user_id": None, "title": title, "title_id": item.id, "genre": genre}


def _messages(plan: dict[str, Any], turns: int) -> list[str]:
    first = f"I like {plan['title']}" if plan["title"] else "what should I watch next?"
    script = [
        first,
        f"no {plan['genre']}" if plan["genre"] else "show me more",
        "older films",
        "more like the second one",
        "not that one",
        "show me more",
    ]
    return [script[n] if n < len(script) else "show me more" for n in range(turns)]


async def _conversation(
    client: httpx.AsyncClient, session: str, plan: dict[str, Any], turns: int, deadline: float, latencies: list[float], problems: list[str]
) -> int:
    sent = 0
    for message in _messages(plan, turns):
        if time.monotonic() > deadline:
            break
        body: dict[str, Any] = {"model": "toolrec", "messages": [{"role": "user", "content": message}], "user": session}
        if plan["user_id"] is not None:
            body["toolrec_user_id"] = plan["user_id"]
        started = time.perf_counter()
        try:
            response = await client.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            problems.append(f"{session}: {type(exc).__name__}: {exc}")
            sent += 1
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        sent += 1
        if response.status_code != 200:
            problems.append(f"{session}: HTTP {response.status_code}: {response.text[:200]}")
            continue
        result = response.json()["toolrec"]
        if result["session_id"] != session:
            problems.append(f"{session}: got the turn of session {result['session_id']}")
        excluded = set(result["constraints"]["exclude_genres"])
        for item in result["items"]:
            if excluded & set(item["genres"]):
                problems.append(f"{session}: {item['title']} has an excluded genre {excluded & set(item['genres'])}")
    return sent


def _check_state(state: dict[str, Any], session: str, plan: dict[str, Any], turns_sent: int) -> list[str]:
    problems = []
    if state["session_id"] != session:
        problems.append(f"{session}: stored under {state['session_id']}")
    if state["user_id"] != plan["user_id"]:
        problems.append(f"{session}: user {state['user_id']!r}, expected {plan['user_id']!r}")
    if plan["title"] is not None and state["liked"] and state["liked"][0] != plan["title_id"]:
        problems.append(f"{session}: liked {state['liked']}, expected {plan['title_id']}")
    if turns_sent >= 2 and plan["genre"] and state["constraints"]["exclude_genres"] != [plan["genre"]]:
        problems.append(f"{session}: excludes {state['constraints']['exclude_genres']}, expected [{plan['genre']}]")
    if len(state["shown"]) != len(set(state["shown"])):
        problems.append(f"{session}: an item was shown twice")
    if len(state["turns"]) != turns_sent:
        problems.append(f"{session}: {len(state['turns'])} turns stored, {turns_sent} sent")
    return problems


async def _bench(
    base_url: str, toolbox: Toolbox, sessions: int, turns: int, concurrency: int, max_seconds: float, api_key: str | None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    problems: list[str] = []
    run = uuid.uuid4().hex[:8]  # a server started apart keeps earlier runs' sessions
    plans = {f"bench-{run}-{n}": _plan(toolbox, n) for n in range(sessions)}
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    deadline = time.monotonic() + max_seconds
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=120.0) as client:

        async def one(session: str) -> int:
            async with gate:
                return await _conversation(client, session, plans[session], turns, deadline, latencies, problems)

        counts = await asyncio.gather(*(one(s) for s in plans))
        elapsed = time.perf_counter() - started
        isolation: list[str] = []
        for (session, plan), sent in zip(plans.items(), counts, strict=True):
            if sent == 0:
                continue
            response = await client.get(f"/v1/sessions/{session}")
            if response.status_code != 200:
                isolation.append(f"{session}: state HTTP {response.status_code}")
                continue
            isolation += _check_state(response.json(), session, plan, sent)
    requests = sum(counts)
    return {
        "sessions": sum(1 for c in counts if c),
        "requests": requests,
        "errors": len(problems) + len(isolation),
        "isolation_violations": len(isolation),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else 0.0,
        "p99_ms": round(_percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1) if latencies else 0.0,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(requests / elapsed, 2) if elapsed > 0 else 0.0,
        "concurrency": concurrency,
        "turns_per_session": turns,
        "problems": (problems + isolation)[:10],
    }


def run_bench(
    toolbox: Toolbox,
    *,
    sessions: int = 16,
    turns: int = 4,
    concurrency: int = 8,
    max_seconds: float = 60.0,
    server_concurrency: int = 4,
    k: int = 5,
    api_key: str | None = "bench-key",
) -> dict[str, Any]:
    """Run the benchmark against an in-process server; returns the JSON-ready report."""
    sessions, turns = _bounded(sessions, turns)
    config = AgentConfig(k=k, max_rounds=2, probe_bonus=PROBE_BONUS, planner="tools")  # the scripted LLM probes twice
    settings = ServerSettings(
        api_key=api_key,
        max_concurrency=server_concurrency,
        max_queue=sessions * 2,
        rate_per_minute=60_000.0,
        rate_burst=sessions * turns + 10,
        request_timeout_s=max(30.0, max_seconds),
    )
    app = create_app(settings, scripted_factory(toolbox, config))
    with running(app) as base_url:
        report = asyncio.run(_bench(base_url, toolbox, sessions, turns, concurrency, max_seconds, api_key))
    report = {"dataset": toolbox.dataset.name, "llm": "scripted", "server_concurrency": server_concurrency, **report}
    return report


def bench_server(
    url: str,
    toolbox: Toolbox,
    *,
    sessions: int = 16,
    turns: int = 4,
    concurrency: int = 8,
    max_seconds: float = 60.0,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark against a server started apart on the same run as `toolbox` (its users
    and titles make the sessions' plans); returns the JSON-ready report with what the server
    says of itself (its LLM, its session store)."""
    sessions, turns = _bounded(sessions, turns)
    url = url.rstrip("/")
    try:
        health = Health.model_validate(httpx.get(f"{url}/healthz", timeout=10).raise_for_status().json())
    except (httpx.HTTPError, ValueError) as exc:
        raise BenchError(f"no toolrec server answers at {url}/healthz: {exc}") from exc
    if health.dataset != toolbox.dataset.name:
        raise BenchError(f"the server at {url} serves {health.dataset}, the run given serves {toolbox.dataset.name}")
    report = asyncio.run(_bench(url, toolbox, sessions, turns, concurrency, max_seconds, api_key))
    return {"dataset": health.dataset, "llm": health.llm, "server": url, "session_store": health.sessions, **report}


class BenchError(RuntimeError):
    pass


def _bounded(sessions: int, turns: int) -> tuple[int, int]:
    return max(1, min(sessions, MAX_SESSIONS)), max(1, min(turns, MAX_TURNS))


# --- bench chat ----------------------------------------------------------------------------


class LikeRequest(BaseModel):
    title: str = Field(description="X, as the catalogue or a person names it")
    message: str = Field(description='The turn that asks for it: "something like X but not animated"')


class ChatRequests(BaseModel):
    """The fixed requests of `toolrec bench chat` (eval/bench/chat-like.toml)."""

    requests: list[LikeRequest] = Field(min_length=1)
    follow_ups: list[str] = Field(min_length=1)
    closing: str


class CountingLLM:
    """An LLM that counts its calls (the message readings and any scoring), for calls per turn."""

    def __init__(self, inner: LLM) -> None:
        self.inner, self.name, self.calls = inner, inner.name, 0

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> LLMReply:
        self.calls += 1
        return self.inner.chat(messages, **kwargs)

    def score_options(self, messages: Sequence[ChatMessage], options: Sequence[str], **kwargs: Any) -> OptionScores:
        self.calls += 1
        if not isinstance(self.inner, OptionScorer):
            raise LLMError(f"{self.inner.name} cannot score options")
        return self.inner.score_options(messages, options, **kwargs)


def like_figures(toolbox: Toolbox, target: int, listed: Sequence[str]) -> tuple[float, float]:
    """A list's share of items sharing a genre with the target, and its mean text-index cosine to it."""
    dense = [toolbox.dataset.item_index[i] for i in listed]
    if not dense:
        return 0.0, 0.0
    values = toolbox.attribute_items.get(toolbox.primary_attribute or "", {})
    genres = {v for v, ids in values.items() if target in set(ids.tolist())}
    shared = [bool(genres & set(toolbox.dataset.item(d).attributes.get(toolbox.primary_attribute or "", ()))) for d in dense]
    text = toolbox.space(TEXT_SPACE)
    cosine = text.vectors(np.asarray(dense)) @ text.vectors(np.asarray([target]))[0]
    return float(np.mean(shared)), float(np.mean(cosine))


def chat_bench(toolbox: Toolbox, llm: LLM, requests: ChatRequests, *, k: int = 5, seed: int = 2023) -> dict[str, Any]:
    """Each request is its own session with a sampled known user: the "like X" turn, a wish the
    LLM reads, then "show me more". The "like X" list is compared with the backbone's own top k
    for that user under the same constraints (X and the history left out)."""
    counting = CountingLLM(llm) if uses_llm(llm) else None
    model: LLM = counting if counting is not None else llm
    factory = shared_agent_factory(model, toolbox, agent_config(model, k=k))
    conversation = Conversation(factory, toolbox, config=ConversationConfig())
    rules = conversation.rules
    users = np.random.default_rng(seed).choice(
        toolbox.dataset.user_ids, size=len(requests.requests), replace=len(requests.requests) > len(toolbox.dataset.user_ids)
    )
    seconds: list[float] = []
    calls: list[int] = []
    agent_like: list[tuple[float, float]] = []
    backbone_like: list[tuple[float, float]] = []
    misread: list[str] = []
    for n, (wish, user) in enumerate(zip(requests.requests, users, strict=True)):
        found = rules.title(wish.title)
        if found is None:
            misread.append(f"{wish.title}: not in the catalogue")
            continue
        target = toolbox.dataset.item_index[found]
        session = f"bench-chat-{n}"
        for turn, message in enumerate([wish.message, requests.follow_ups[n % len(requests.follow_ups)], requests.closing]):
            before, started = counting.calls if counting else 0, time.perf_counter()
            result = conversation.turn(session, message, user_id=str(user))
            seconds.append(time.perf_counter() - started)
            calls.append((counting.calls if counting else 0) - before)
            if turn:
                continue
            if result.constraints.like != [found]:
                misread.append(f"{wish.message!r}: read as {result.constraints.like}")
            agent_like.append(like_figures(toolbox, target, [i.id for i in result.items]))
            filters = result.constraints.filters()
            arguments = {"user_id": str(user), "k": k, "exclude_ids": [found], **(filters.model_dump(exclude_none=True) if filters else {})}
            backbone = call_tool(toolbox, "retrieve", arguments)
            ids = [i.id for i in backbone.output.items] if isinstance(backbone.output, ItemsOutput) else []
            backbone_like.append(like_figures(toolbox, target, ids))

    with_llm = [s for s, c in zip(seconds, calls, strict=True) if c]
    rules_only = [s for s, c in zip(seconds, calls, strict=True) if not c]

    def mean(values: list[tuple[float, float]], index: int) -> float:
        return round(float(np.mean([v[index] for v in values])), 3) if values else 0.0

    return {
        "dataset": toolbox.dataset.name,
        "llm": llm.name,
        "requests": len(requests.requests),
        "turns": len(seconds),
        "turn_seconds_p50": round(statistics.median(seconds), 3),
        "turn_seconds_p95": round(_percentile(seconds, 95), 3),
        "turn_seconds_max": round(max(seconds), 3),
        "turn_seconds_p50_with_an_llm_call": round(statistics.median(with_llm), 3) if with_llm else None,
        "turn_seconds_p50_rules_only": round(statistics.median(rules_only), 3) if rules_only else None,
        "load_average_after": round(os.getloadavg()[0], 2),
        "llm_calls_per_turn": round(statistics.mean(calls), 3),
        "turns_with_an_llm_call": _share(sum(c > 0 for c in calls), len(calls)),
        "like_genre_overlap": mean(agent_like, 0),
        "like_genre_overlap_backbone": mean(backbone_like, 0),
        "like_text_similarity": mean(agent_like, 1),
        "like_text_similarity_backbone": mean(backbone_like, 1),
        "misread": misread,
    }
