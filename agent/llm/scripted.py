"""A model that replays a script: drives the real agent graph in unit tests."""

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from agent.llm.base import ChatMessage, LLMReply
from agent.llm.parsing import parse_tool_calls, tool_names


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


class ScriptedLLM:
    """Replays `replies` in order. A str becomes a reply whose tool calls are parsed from the
    text when tools are offered, as the embedded backend does; an LLMReply is returned as is;
    an exception is raised (e.g. LLMTimeout). Every call is recorded in `calls`."""

    def __init__(self, replies: Sequence[str | LLMReply | BaseException], name: str = "scripted") -> None:
        self.name = name
        self._replies = list(replies)
        self.calls: list[ScriptedCall] = []

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
    ) -> LLMReply:
        index = len(self.calls)
        if index >= len(self._replies):
            last = messages[-1].content[:200] if messages else ""
            raise ScriptExhausted(
                f"{self.name}: call {index + 1} but only {len(self._replies)} replies scripted; last message was: {last!r}"
            )
        self.calls.append(
            ScriptedCall(
                messages=list(messages), tools=tools, max_tokens=max_tokens,
                temperature=temperature, seed=seed, timeout=timeout,
            )
        )  # fmt: skip
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
