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
    # Prompt tokens the backend did not compute again: llama.cpp's evaluated prefix of the
    # previous prompt, or a server's prompt cache where it reports one; 0 when unknown.
    prompt_tokens_reused: int = 0
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
    {"type": "function", "function": {"name", "description", "parameters"}}. `json_schema`
    constrains the reply to JSON of that schema where the runtime can (llama.cpp grammar, an
    OpenAI-compatible server's response_format)."""

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
        json_schema: dict[str, Any] | None = None,
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
