"""The one interface every LLM backend implements, and the records that cross it."""

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant", "tool"]


class ChatMessage(BaseModel):
    role: Role
    content: str


class ToolCall(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class LLMReply(BaseModel):
    text: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    model: str
    cached: bool = False


class LLMError(RuntimeError):
    """A backend could not produce a reply (transport, server or runtime failure)."""


class LLMTimeout(LLMError):
    """The reply did not arrive within the caller's time budget."""


@runtime_checkable
class LLM(Protocol):
    """A chat model. `tools` are OpenAI function-calling specs:
    {"type": "function", "function": {"name", "description", "parameters"}}."""

    name: str

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        timeout: float | None = None,
    ) -> LLMReply: ...


class NoLLM:
    """Stands in where no language model is wanted (`--llm none`, an evaluation method with zero
    plan rounds): the agent then runs with zero plan rounds (backbone plus the caller's planned
    calls) and the conversation reads messages with its rules only. Any call is a configuration
    error."""

    name = "none"

    def chat(self, messages: Sequence[ChatMessage], **_: Any) -> LLMReply:
        raise LLMError("no LLM is configured (--llm none): this call should not have been made")


def uses_llm(llm: LLM | None) -> bool:
    """Whether `llm` is a real model (not absent, not the NoLLM stand-in)."""
    return llm is not None and not isinstance(llm, NoLLM)
