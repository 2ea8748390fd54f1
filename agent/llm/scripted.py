"""A model that replays a script: drives the real agent graph in unit tests."""

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from agent.llm.base import ChatMessage, LLMReply
from agent.llm.parsing import parse_tool_calls, tool_names
from agent.llm.scoring import OptionScores, check_options, combine, ordering_score


class ScriptExhausted(RuntimeError):
    """More calls than scripted replies. Deliberately not an LLMError, so agent code that
    handles LLM failures cannot mistake a broken test script for a model failure."""


class ScriptedCall(BaseModel):
    messages: list[ChatMessage]
    tools: list[dict[str, Any]] | None
    max_tokens: int
    temperature: float
    seed: int
    timeout: float | None
    json_schema: dict[str, Any] | None = None


class ScriptedScoring(BaseModel):
    messages: list[ChatMessage]
    options: list[str]
    orderings: int
    timeout: float | None


class ScriptedLLM:
    """Replays `replies` in order. A str becomes a reply whose tool calls are parsed from the
    text when tools are offered, as the embedded backend does; an LLMReply is returned as is;
    an exception is raised (e.g. LLMTimeout). Every call is recorded in `calls`.

    `preferences` script score_options the same way, one entry per call: weights per option
    (normalised to probabilities; zeros allowed) or an exception to raise. Scoring calls are
    recorded in `scorings`."""

    def __init__(
        self,
        replies: Sequence[str | LLMReply | BaseException],
        name: str = "scripted",
        preferences: Sequence[Sequence[float] | BaseException] = (),
    ) -> None:
        self.name = name
        self._replies = list(replies)
        self._preferences = list(preferences)
        self.calls: list[ScriptedCall] = []
        self.scorings: list[ScriptedScoring] = []

    @property
    def remaining(self) -> int:
        return len(self._replies) - len(self.calls)

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        timeout: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> LLMReply:
        index = len(self.calls)
        if index >= len(self._replies):
            last = messages[-1].content[:200] if messages else ""
            raise ScriptExhausted(
                f"{self.name}: call {index + 1} but only {len(self._replies)} replies scripted; last message was: {last!r}"
            )
        self.calls.append(
            ScriptedCall(
                messages=list(messages),
                tools=tools,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                timeout=timeout,
                json_schema=json_schema,
            )
        )
        item = self._replies[index]
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, LLMReply):
            return item
        return LLMReply(
            text=item,
            tool_calls=parse_tool_calls(item, tool_names(tools)) if tools else [],
            # Whitespace word counts: enough for token accounting to be non-trivial in tests.
            prompt_tokens=sum(len(m.content.split()) for m in messages),
            completion_tokens=len(item.split()),
            seconds=0.0,
            model=self.name,
        )

    def score_options(
        self,
        messages: Sequence[ChatMessage],
        options: Sequence[str],
        *,
        orderings: int = 2,
        timeout: float | None = None,
    ) -> OptionScores:
        check_options(messages, options)
        index = len(self.scorings)
        if index >= len(self._preferences):
            raise ScriptExhausted(
                f"{self.name}: scoring {index + 1} but only {len(self._preferences)} preferences scripted; options were {list(options)}"
            )
        self.scorings.append(
            ScriptedScoring(
                messages=list(messages),
                options=list(options),
                orderings=orderings,
                timeout=timeout,
            )
        )
        item = self._preferences[index]
        if isinstance(item, BaseException):
            raise item
        if len(item) != len(options) or min(item) < 0 or sum(item) <= 0:
            raise ValueError(f"{self.name}: preference {list(item)} does not fit {len(options)} options")
        total = sum(item)
        # A zero weight becomes a very small probability: log-probabilities must stay finite.
        logprobs = [math.log(max(w / total, 1e-12)) for w in item]
        identity = ordering_score(list(range(len(options))), logprobs, prompt_tokens=0, tokens_reused=0, seconds=0.0)
        return combine(self.name, "scripted", options, [identity], 0.0)
