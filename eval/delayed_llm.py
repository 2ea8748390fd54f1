"""An OpenAI-compatible chat server on loopback that answers every request after a fixed delay:
a stand-in for a hosted LLM, to measure how `eval run` scales with users in flight (the delay
scales by construction; what binds is this machine's CPU). Its replies are valid for the menu
planner weighed by the LLM (log-probabilities of the option numbers), the free-form tool
planner (a `retrieve` of the user's n-th favourite genre in round n, then finish) and the LLM
reranker (the candidates in reverse): each depends on the request alone, so that runs repeat.

    toolrec bench delayed-llm --port 8011 --delay-ms 500 &
    TOOLREC_OPENAI_BASE_URL=http://127.0.0.1:8011/v1 toolrec eval run CONFIG --llm openai:delayed --concurrency 16

`fail_first` answers the first requests with 429 (rate limited), to exercise the client's retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from agent.serve.openai import ChatCompletionRequest

MENU_LINE = re.compile(r"^(\d+)\. (.+)$", re.M)
MENU_LAST = re.compile(r"1 to (\d+)\.")
TOP_GENRES = re.compile(r"watch most: (.+)")
CANDIDATE = re.compile(r"^\d+\. ", re.M)


class Stats(BaseModel):
    """What the server saw (GET /stats): to check the users in flight a run claims."""

    requests: int = 0
    rate_limited: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0


class ChatRequest(ChatCompletionRequest):
    """OpenAI's chat request as toolrec's server reads it, with the option scorer's fields."""

    logprobs: bool | None = None
    top_logprobs: int | None = None


def _weight(text: str) -> float:
    """A fixed taste for an option's text: the same option weighs the same in any position."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF * 4.0


def _option_logprobs(question: str, top: int) -> list[tuple[str, float]]:
    """(label, log-probability) of the menu's option numbers, best first."""
    last = MENU_LAST.search(question)
    n = int(last.group(1)) if last else 0
    options = {int(m.group(1)): m.group(2) for m in MENU_LINE.finditer(question) if int(m.group(1)) <= n}
    weights = {str(k): _weight(text) for k, text in options.items()} or {"1": 0.0}
    norm = math.log(sum(math.exp(w) for w in weights.values()))
    ranked = sorted(((label, w - norm) for label, w in weights.items()), key=lambda kv: -kv[1])
    return ranked[: max(top, 1)]


def _plan_step(request: ChatRequest) -> str:
    """Round n retrieves the n-th genre the user watches most; no such genre: finish."""
    rounds = sum(1 for m in request.messages if m.role == "assistant")
    first_user = next((m.text() for m in request.messages if m.role == "user"), "")
    found = TOP_GENRES.search(first_user)
    genres = [g.rsplit(" (", 1)[0].strip() for g in found.group(1).split(",")] if found else []
    system = request.messages[0].text()
    if rounds < len(genres) and "- retrieve(" in system and genres[rounds] != "-":
        return json.dumps({"name": "retrieve", "arguments": {"genres": [genres[rounds]]}})
    return json.dumps({"name": "finish", "arguments": {}})


def reply(request: ChatRequest) -> dict[str, Any]:
    """The completion for `request` (OpenAI's chat.completion object)."""
    last = request.messages[-1].text()
    logprobs = None
    if request.logprobs:
        ranked = _option_logprobs(last, request.top_logprobs or 1)
        text = ranked[0][0]
        top = [{"token": label, "logprob": lp, "bytes": None} for label, lp in ranked]
        logprobs = {"content": [{"token": text, "logprob": ranked[0][1], "bytes": None, "top_logprobs": top}]}
    elif "Candidate" in last:
        text = json.dumps({"items": list(range(len(CANDIDATE.findall(last)), 0, -1))})
    else:
        text = _plan_step(request)
    prompt_tokens = sum(len(m.text().split()) for m in request.messages)
    completion_tokens = len(text.split())
    return {
        "id": "chatcmpl-delayed",
        "object": "chat.completion",
        "created": 0,
        "model": request.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": logprobs}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def create_app(delay_s: float, fail_first: int = 0) -> FastAPI:
    """The server: every answer after `delay_s` seconds (awaited, so requests overlap), the
    first `fail_first` of them a 429."""
    app = FastAPI(title="delayed OpenAI-compatible LLM")
    stats = Stats()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "delayed", "object": "model", "created": 0, "owned_by": "toolrec"}]}

    @app.get("/stats")
    def counts() -> Stats:
        return stats

    @app.post("/v1/chat/completions")
    async def completions(request: ChatRequest) -> JSONResponse:
        # one event loop: the counts need no lock
        stats.requests += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        limited = stats.requests <= fail_first
        try:
            await asyncio.sleep(delay_s)
        finally:
            stats.in_flight -= 1
        if limited:
            stats.rate_limited += 1
            return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit_error"}}, status_code=429)
        return JSONResponse(reply(request))

    return app


def serve(port: int, delay_ms: float, fail_first: int) -> None:
    uvicorn.run(create_app(delay_ms / 1000, fail_first), host="127.0.0.1", port=port, log_level="warning", access_log=False)
