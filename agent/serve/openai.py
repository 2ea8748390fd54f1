"""The OpenAI-compatible payloads: chat-completion requests and replies, streamed chunks, the
model list, and the server's own /v1/recommend body and health record."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.chat import TurnResult
from agent.chat.store import StoreKind
from agent.request import RecommendRequest
from tools.constraints import Filters


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completion request; sampling fields are accepted and ignored (the agent
    decides). Only the last user message is a new turn: the session remembers the rest."""

    model_config = ConfigDict(extra="allow")
    model: str = "toolrec"
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    user: str | None = Field(None, max_length=200, description="Session id (or use the X-Session-Id header)")
    toolrec_user_id: str | None = Field(None, max_length=100, description="Bind a new session to this dataset user")


class ChatTurnBody(BaseModel):
    """One turn of the web page's streamed chat (`POST /v1/chat/stream`)."""

    model_config = ConfigDict(extra="forbid")
    session_id: str = Field(min_length=1, max_length=200)
    message: str = Field(min_length=1)
    user_id: str | None = Field(None, max_length=100, description="Bind a new session to this dataset user")


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: Literal["stop"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    toolrec: TurnResult = Field(description="The turn: items with reasons, constraints, session")


class RecommendBody(RecommendRequest):
    """A RecommendRequest plus how many items; `include_trace` returns the agent's trace."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(10, ge=1, le=100)
    include_trace: bool = False
    history: list[str] | None = Field(None, max_length=2000)
    exclude: list[str] = Field(default_factory=list, max_length=2000)
    request: str | None = Field(None, max_length=2000)
    constraints: Filters | None = None

    @model_validator(mode="after")
    def _no_probes(self) -> RecommendBody:
        if self.probes:
            raise ValueError("probes are not accepted over HTTP")
        return self


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "toolrec"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    dataset: str
    items: int
    users: int
    llm: str
    sessions: StoreKind


def completion(completion_id: str, model: str, message: str, result: TurnResult) -> ChatCompletion:
    prompt, completion = len(message.split()), len(result.reply.split())
    return ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=model,
        choices=[ChatChoice(message=ChatCompletionMessage(content=result.reply))],
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        toolrec=result,
    )


def chunk(completion_id: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def pieces(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + ("\n" if n < len(lines) - 1 else "") for n, line in enumerate(lines)]
