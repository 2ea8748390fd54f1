"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio)."""

import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion

from agent.llm.base import ChatMessage, LLMError, LLMReply, LLMTimeout, ToolCall
from agent.llm.parsing import loads_lenient, parse_tool_calls, tool_names

# Worth another try: the server or the network may recover. Everything else (401, 400, 404,
# a malformed response) will fail the same way again and is raised at once.
_TRANSIENT = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


def _to_openai(message: ChatMessage) -> dict[str, str]:
    # A "tool" message needs the id of the assistant's tool call, which ChatMessage does not
    # carry, and servers reject orphan tool messages; it is sent as a labelled user turn.
    if message.role == "tool":
        return {"role": "user", "content": f"Tool result:\n{message.content}"}
    return {"role": message.role, "content": message.content}


def _native_tool_calls(completion: ChatCompletion) -> tuple[list[ToolCall], list[str]]:
    """Parsed native tool calls, and the raw text of any whose arguments are not JSON (kept
    in the reply text so that validation downstream reports them instead of losing them)."""
    calls: list[ToolCall] = []
    unparsed: list[str] = []
    for call in completion.choices[0].message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is None:  # custom (non-function) tool calls are not used here
            continue
        try:
            args = loads_lenient(function.arguments) if function.arguments.strip() else {}
        except ValueError:
            args = None
        if isinstance(args, dict):
            calls.append(ToolCall(name=function.name, arguments=args))
        else:
            raw = {"name": function.name, "arguments": function.arguments}
            unparsed.append(json.dumps(raw, ensure_ascii=False))
    return calls, unparsed


class OpenAICompatLLM:
    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        request_timeout: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.request_timeout = request_timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        # Local servers need no key, but the SDK insists on one.
        # The SDK's own retries are off: ours share the caller's deadline across attempts.
        self._client = OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=0,
            timeout=request_timeout,
        )  # fmt: skip

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
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [_to_openai(m) for m in messages],
            # max_tokens rather than max_completion_tokens: local servers all accept it.
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        if tools:
            request["tools"] = tools
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            budget = self.request_timeout if deadline is None else deadline - time.monotonic()
            if budget <= 0:
                raise LLMTimeout(f"{self.name}: no time left after {attempt} attempts")
            try:
                completion = self._client.chat.completions.create(**request, timeout=budget)
            except openai.APITimeoutError as exc:
                if deadline is not None:
                    raise LLMTimeout(f"{self.name}: no reply within {timeout:.1f}s") from exc
                last_error = exc
            except _TRANSIENT as exc:
                last_error = exc
            except openai.APIError as exc:
                raise LLMError(f"{self.name}: {exc}") from exc
            else:
                return self._reply(completion, tools, time.monotonic() - start)
            if attempt == self.max_retries:
                break
            delay = self.backoff_s * 2**attempt * (1 + random.random() / 4)  # jitter
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise LLMTimeout(f"{self.name}: out of time while retrying: {last_error}")
            self._sleep(delay)
        if isinstance(last_error, openai.APITimeoutError):
            raise LLMTimeout(f"{self.name}: timed out {self.max_retries + 1} times") from last_error
        raise LLMError(f"{self.name}: failed after {self.max_retries + 1} attempts: {last_error}") from last_error

    def _reply(self, completion: ChatCompletion, tools: list[dict[str, Any]] | None, seconds: float) -> LLMReply:
        if not completion.choices:
            raise LLMError(f"{self.name}: the response has no choices")
        text = completion.choices[0].message.content or ""
        calls, unparsed = _native_tool_calls(completion)
        if unparsed:
            text = "\n".join([text, *unparsed]).strip()
        if tools and not calls and not unparsed:
            # Servers without a tool-call parser return the call as text in the content.
            calls = parse_tool_calls(text, tool_names(tools))
        usage = completion.usage  # optional in the protocol; some servers omit it
        return LLMReply(
            text=text,
            tool_calls=calls,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            seconds=seconds,
            model=self.name,
        )
