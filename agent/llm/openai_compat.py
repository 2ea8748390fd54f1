"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio).

JSON-schema-constrained replies go through `response_format`, in the dialect the server
accepts: OpenAI's {"type": "json_schema", ...} first, then {"type": "json_object", "schema"}
(llama-cpp-python's server); the one that worked is remembered. Option scoring reads
`top_logprobs` of a one-token reply, and falls back to a constrained reply naming one option
per ordering when the server returns no log-probabilities.
"""

import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from agent.llm.base import ChatMessage, LLMError, LLMReply, LLMTimeout, ToolCall
from agent.llm.parsing import (
    ReplyParseError,
    loads_lenient,
    parse_model,
    parse_tool_calls,
    tool_names,
)
from agent.llm.scoring import (
    OptionScores,
    OrderingScore,
    ScoringMethod,
    check_options,
    combine,
    menu_messages,
    option_labels,
    option_orders,
    ordering_score,
)

# Worth another try: the server or the network may recover. Everything else (401, 400, 404,
# a malformed response) will fail the same way again and is raised at once.
_TRANSIENT = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)

SchemaDialect = Literal["json_schema", "json_object_schema"]
# OpenAI's top_logprobs maximum; option numbers of a menu of up to nine are among the top 20
# unless the model wants to say something else entirely (then label_mass shows it).
TOP_LOGPROBS = 20


class RequestRejected(LLMError):
    """The server refused the request's shape (HTTP 400 or 422): e.g. a response_format
    dialect or logprobs it does not support."""


class _OptionReply(BaseModel):
    option: int


def _response_format(schema: dict[str, Any], dialect: SchemaDialect) -> dict[str, Any]:
    if dialect == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema, "strict": True},
        }
    return {"type": "json_object", "schema": schema}


def _option_schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"option": {"type": "integer", "enum": list(range(1, n + 1))}},
        "required": ["option"],
        "additionalProperties": False,
    }


def _cached_tokens(completion: ChatCompletion) -> int:
    """Prompt tokens the server served from its prompt cache, where it says (OpenAI does)."""
    details = completion.usage.prompt_tokens_details if completion.usage else None
    return (details.cached_tokens or 0) if details else 0


def _label_logprobs(completion: ChatCompletion, labels: Sequence[str]) -> list[float | None] | None:
    """Log-probability of each label as the first reply token, from top_logprobs (None for a
    label outside the top K); None when the server returned no log-probabilities."""
    logprobs = completion.choices[0].logprobs if completion.choices else None
    if logprobs is None or not logprobs.content:
        return None
    found: dict[str, float] = {}
    for top in logprobs.content[0].top_logprobs:
        # " 3" and "3" both name option 3: their probabilities add up.
        label = top.token.strip()
        if label in labels:
            prior = found.get(label)
            found[label] = top.logprob if prior is None else float(np.logaddexp(prior, top.logprob))
    return [found.get(label) for label in labels]


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
        # Learnt from the server on first use: which response_format dialect it accepts and
        # whether it returns log-probabilities (None: not yet known).
        self._schema_dialect: SchemaDialect | None = None
        self._logprobs_supported: bool | None = None
        # Local servers need no key, but the SDK insists on one.
        # The SDK's own retries are off: ours share the caller's deadline across attempts.
        self._client = OpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=request_timeout,
        )

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
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        request = self._request(messages, max_tokens, temperature, seed)
        if tools:
            request["tools"] = tools
        if json_schema is None:
            completion = self._create(request, deadline)
        else:
            completion = self._create_constrained(request, json_schema, deadline)
        return self._reply(completion, tools, time.monotonic() - start)

    def _request(self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float, seed: int) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [_to_openai(m) for m in messages],
            # max_tokens rather than max_completion_tokens: local servers all accept it.
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
        }

    def _create_constrained(self, request: dict[str, Any], schema: dict[str, Any], deadline: float | None) -> ChatCompletion:
        """The request with a response_format in the first dialect the server accepts."""
        dialects: list[SchemaDialect] = ["json_schema", "json_object_schema"]
        if self._schema_dialect is not None:
            dialects = [self._schema_dialect]
        rejected: RequestRejected | None = None
        for dialect in dialects:
            try:
                completion = self._create({**request, "response_format": _response_format(schema, dialect)}, deadline)
            except RequestRejected as exc:
                rejected = exc
                continue
            self._schema_dialect = dialect
            return completion
        raise LLMError(f"{self.name}: no response_format dialect accepted: {rejected}")

    def _create(self, request: dict[str, Any], deadline: float | None) -> ChatCompletion:
        """One completion, retrying transient failures within the deadline."""
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            budget = self.request_timeout if deadline is None else deadline - time.monotonic()
            if budget <= 0:
                raise LLMTimeout(f"{self.name}: no time left after {attempt} attempts")
            try:
                return self._client.chat.completions.create(**request, timeout=budget)
            except openai.APITimeoutError as exc:
                if deadline is not None:
                    raise LLMTimeout(f"{self.name}: no reply within the deadline") from exc
                last_error = exc
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                raise RequestRejected(f"{self.name}: {exc}") from exc
            except openai.InternalServerError as exc:
                # llama-cpp-python's server answers a request it cannot validate with a 500
                # carrying pydantic's "validation error": no retry would change that.
                if "validation error" in str(exc):
                    raise RequestRejected(f"{self.name}: {exc}") from exc
                last_error = exc
            except _TRANSIENT as exc:
                last_error = exc
            except openai.APIError as exc:
                raise LLMError(f"{self.name}: {exc}") from exc
            if attempt == self.max_retries:
                break
            delay = self.backoff_s * 2**attempt * (1 + random.random() / 4)  # jitter
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise LLMTimeout(f"{self.name}: out of time while retrying: {last_error}")
            self._sleep(delay)
        if isinstance(last_error, openai.APITimeoutError):
            raise LLMTimeout(f"{self.name}: timed out {self.max_retries + 1} times") from last_error
        raise LLMError(f"{self.name}: failed after {self.max_retries + 1} attempts: {last_error}") from last_error

    def score_options(
        self,
        messages: Sequence[ChatMessage],
        options: Sequence[str],
        *,
        orderings: int = 2,
        timeout: float | None = None,
    ) -> OptionScores:
        """The model's preference over `options` (see agent/llm/scoring.py), from the
        log-probabilities of a one-token reply, or, where the server gives none, from a
        constrained reply per ordering (a vote: the named option gets nearly all the mass)."""
        check_options(messages, options)
        labels = option_labels(len(options))
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        method: ScoringMethod = "logprobs"
        scored: list[OrderingScore] = []
        for order in option_orders(len(options), orderings):
            began = time.monotonic()
            request = self._request(menu_messages(messages, options, order), 1, 0.0, 0)
            found = None
            if self._logprobs_supported is not False:
                try:
                    completion = self._create({**request, "logprobs": True, "top_logprobs": TOP_LOGPROBS}, deadline)
                except RequestRejected:
                    completion = None
                found = None if completion is None else _label_logprobs(completion, labels)
                self._logprobs_supported = found is not None
            if found is None:
                method = "constrained_reply"
                completion = self._create_constrained({**request, "max_tokens": 16}, _option_schema(len(options)), deadline)
                found = self._voted_label(completion, len(options))
            assert completion is not None  # found came from one of the two completions
            scored.append(
                ordering_score(
                    order,
                    found,
                    prompt_tokens=completion.usage.prompt_tokens if completion.usage else 0,
                    tokens_reused=_cached_tokens(completion),
                    seconds=time.monotonic() - began,
                )
            )
        return combine(self.name, method, options, scored, time.monotonic() - start)

    @staticmethod
    def _voted_label(completion: ChatCompletion, n: int) -> list[float | None]:
        """Log-probability 0 for the option the constrained reply names, None for the rest;
        all None when it names none (the orderings then carry no preference)."""
        text = (completion.choices[0].message.content or "") if completion.choices else ""
        try:
            named = parse_model(text, _OptionReply).option
        except ReplyParseError:
            named = 0
        return [0.0 if p + 1 == named else None for p in range(n)]

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
            prompt_tokens_reused=_cached_tokens(completion),
            completion_tokens=usage.completion_tokens if usage else 0,
            seconds=seconds,
            model=self.name,
        )
