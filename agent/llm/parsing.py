"""Lenient reading of LLM replies, and a structured ask with one corrective retry.

Small models wrap JSON in fences, tags or chatter, and sometimes write Python-style dicts.
Everything found is validated with pydantic afterwards, so leniency here never lets a wrong
shape through; it only stops a good answer from being thrown away for its packaging.
"""

import ast
import json
import re
from collections.abc import Collection, Iterator, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from agent.llm.base import LLM, ChatMessage, LLMReply, LLMTimeout, ToolCall

_TOOL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_JSON_WORDS = {"true": "True", "false": "False", "null": "None"}

M = TypeVar("M", bound=BaseModel)


class ReplyParseError(ValueError):
    """A reply held no usable JSON, or none that validated; `detail` is what to tell the model."""

    def __init__(self, detail: str, text: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.text = text


def _balanced_spans(text: str) -> Iterator[str]:
    """Every top-level {...} or [...] span, skipping brackets inside quoted strings."""
    i = 0
    while i < len(text):
        if text[i] not in "{[":
            i += 1
            continue
        depth, quote, escaped = 0, "", False
        for j in range(i, len(text)):
            ch = text[j]
            if quote:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    yield text[i : j + 1]
                    i = j
                    break
        # An unclosed span (truncated reply, stray quote) is dropped; later starts still count.
        i += 1


def _candidates(text: str) -> Iterator[str]:
    """Likely JSON snippets, most explicit packaging first: tool-call tags, fences, bare spans."""
    for pattern in (_TOOL_TAG, _FENCE):
        for match in pattern.finditer(text):
            inner = match.group(1).strip()
            if inner:
                yield inner
                yield from _balanced_spans(inner)
    yield from _balanced_spans(text)


def _python_literals(snippet: str) -> str:
    """Rewrite bare JSON true/false/null as Python literals, leaving quoted strings alone."""
    out: list[str] = []
    for token in re.finditer(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|[A-Za-z_]+|.", snippet, re.S):
        word = token.group(0)
        out.append(_JSON_WORDS.get(word, word))
    return "".join(out)


def loads_lenient(snippet: str) -> Any:
    """json.loads, then with trailing commas removed, then as a Python literal (single quotes,
    True/None) via ast.literal_eval, which evaluates no code. Raises ValueError."""
    attempts = (snippet, _TRAILING_COMMA.sub(r"\1", snippet))
    for attempt in attempts:
        try:
            return json.loads(attempt)
        except (json.JSONDecodeError, RecursionError):
            continue
    try:
        value = ast.literal_eval(_python_literals(attempts[1]))
        # Back through JSON: sets, bytes or complex numbers are refused, tuples become
        # lists and keys strings, so callers only ever see what JSON could have said.
        return json.loads(json.dumps(value))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not JSON: {snippet[:80]!r}") from exc


def iter_json(text: str) -> Iterator[Any]:
    """Every JSON value found in `text`, in the order `_candidates` proposes them."""
    seen: set[str] = set()
    for snippet in _candidates(text):
        if snippet in seen:
            continue
        seen.add(snippet)
        try:
            yield loads_lenient(snippet)
        except ValueError:
            continue


def find_json(text: str) -> Any:
    for value in iter_json(text):
        return value
    raise ReplyParseError("the reply contains no JSON value", text)


_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")


def _as_tool_call(value: Any, offered: Collection[str]) -> ToolCall | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # OpenAI shape {"type":..., "function": {...}}
        value = value["function"]
    name = next((value[k] for k in ("name", "tool", "tool_name") if k in value), None)
    if not isinstance(name, str) or not name:
        return None
    key = next((k for k in _ARGUMENT_KEYS if k in value), None)
    # Without an arguments key, {"name": "Alien", "year": 1979} would pass for a call;
    # such a dict counts only when it names one of the offered tools.
    if key is None and name not in offered:
        return None
    args: Any = value[key] if key is not None else {}
    if isinstance(args, str):  # OpenAI sends arguments as a JSON string
        try:
            args = loads_lenient(args) if args.strip() else {}
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(name=name, arguments=args)


def tool_names(tools: Sequence[dict[str, Any]] | None) -> set[str]:
    """The function names in OpenAI tool specs."""
    return {t["function"]["name"] for t in tools or [] if isinstance(t.get("function"), dict)}


def parse_tool_calls(text: str, offered: Collection[str] = ()) -> list[ToolCall]:
    """All tool calls in a reply: `<tool_call>` tags, fenced or bare {"name", "arguments"}
    objects, or a JSON list of them. Duplicates (the same call seen through two wrappers)
    are dropped. `offered` (names of the offered tools) also admits calls written without
    arguments; calls to other names are kept, so that the caller can report them."""
    calls: list[ToolCall] = []
    for value in iter_json(text):
        for item in value if isinstance(value, list) else [value]:
            call = _as_tool_call(item, offered)
            if call is not None and call not in calls:
                calls.append(call)
    return calls


def parse_tool_call(text: str, offered: Collection[str] = ()) -> ToolCall | None:
    calls = parse_tool_calls(text, offered)
    return calls[0] if calls else None


def _short_validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors())


def parse_model(text: str, model_cls: type[M], extra: Sequence[Any] = ()) -> M:
    """The first JSON value in `text` (after the already-decoded values in `extra`, e.g. native
    tool calls) that validates as `model_cls`. On failure the error carries the validation
    message of the first JSON object found, which is what the model most likely meant."""
    errors: list[tuple[bool, str]] = []
    for value in [*extra, *iter_json(text)]:
        try:
            return model_cls.model_validate(value)
        except ValidationError as exc:
            errors.append((isinstance(value, dict), _short_validation_message(exc)))
    if not errors:
        raise ReplyParseError("the reply contains no JSON object", text)
    # Stable sort: the first dict's error if any dict was found, else the first error.
    raise ReplyParseError(sorted(errors, key=lambda e: not e[0])[0][1], text)


class Attempt(BaseModel):
    messages: list[ChatMessage]
    reply: LLMReply | None
    error: str | None = None
    timed_out: bool = False


class StructuredResult(BaseModel, Generic[M]):
    value: M | None
    attempts: list[Attempt]
    first_valid: bool

    @property
    def ok(self) -> bool:
        return self.value is not None


def _correction(detail: str) -> str:
    return f"That reply could not be used: {detail}\nAnswer again with only the corrected JSON object and no other text."


def ask_structured(
    llm: LLM,
    messages: Sequence[ChatMessage],
    model_cls: type[M],
    *,
    tools: list[dict[str, Any]] | None = None,
    retries: int = 1,
    **chat_kwargs: Any,
) -> StructuredResult[M]:
    """Ask, validate the reply as `model_cls`, and on failure retry up to `retries` times with
    the bad reply and the validation error appended to the conversation.

    Native tool calls are tried first, as {"name": ..., "arguments": ...} dicts. A timeout ends
    the exchange as a failed attempt (the time budget is spent; the caller falls back); any
    other LLMError propagates, since it means the backend itself is broken.
    """
    convo = list(messages)
    attempts: list[Attempt] = []
    for _ in range(retries + 1):
        try:
            reply = llm.chat(convo, tools=tools, **chat_kwargs)
        except LLMTimeout as exc:
            attempts.append(Attempt(messages=convo, reply=None, error=f"timeout: {exc}", timed_out=True))
            break
        native = [call.model_dump() for call in reply.tool_calls]
        try:
            value = parse_model(reply.text, model_cls, extra=native)
        except ReplyParseError as exc:
            attempts.append(Attempt(messages=convo, reply=reply, error=exc.detail))
            convo = [
                *convo,
                ChatMessage(role="assistant", content=reply.text),
                ChatMessage(role="user", content=_correction(exc.detail)),
            ]
            continue
        attempts.append(Attempt(messages=convo, reply=reply))
        return StructuredResult(value=value, attempts=attempts, first_valid=len(attempts) == 1)
    return StructuredResult(value=None, attempts=attempts, first_valid=False)
