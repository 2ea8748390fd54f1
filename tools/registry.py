"""The tools, by name: descriptions, pydantic input/output models, function-calling schemas,
and `call_tool`, which runs a tool on LLM-written arguments and always returns a `ToolResult`.

    result = call_tool(toolbox, "retrieve", {"user_id": "1m_42", "genres": ["Sci-Fi"], "k": 10})
    result.ok, result.output, result.error   # output: ItemsOutput; error: ToolError
    message = result.to_message()            # compact JSON for the LLM's tool message

Errors the caller can act on come back as a typed `ToolError` (unknown tool, invalid
arguments with the valid names, unknown attribute values with the valid ones, a k out of its
range with the range, constraints that leave no item naming the one that emptied the set);
only the project's own `ToolFailure` and pydantic's `ValidationError` are turned into errors,
anything else is a bug and propagates.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, SupportsFloat, cast

import annotated_types
from pydantic import BaseModel, SerializeAsAny, ValidationError

from tools.lookup import ItemInfoInput, ItemInfoOutput, LookupInput, LookupOutput, item_info, lookup
from tools.models.base import Counted
from tools.profile import UserProfileInput, UserProfileOutput, user_profile
from tools.ranking import RankInput, rank
from tools.retrieval import (
    RetrieveInput,
    SemanticSearchInput,
    SimilarItemsInput,
    TopItemsInput,
    retrieve,
    semantic_search,
    similar_items,
    top_items,
)
from tools.schemas import ItemsOutput, ToolError, ToolFailure
from tools.toolbox import BLEND_SPACE, TEXT_SPACE, Toolbox


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    fn: Callable[[Toolbox, Any], BaseModel]


_CONSTRAINTS = (
    "Optional constraints: genres (any of), exclude_genres, year_from, year_to, attributes / exclude_attributes "
    "(any attribute type), exclude_ids. The user's history is never returned."
)

TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "retrieve",
            "Recommend items for a user (user_id or history) from a sequential recommender over the whole catalogue. "
            "variant picks the plain model or an attribute-aware one (e.g. genre). query adds a free-text wish "
            f"fused with the model score. {_CONSTRAINTS}",
            RetrieveInput,
            ItemsOutput,
            retrieve,
        ),
        ToolSpec(
            "semantic_search",
            f"Find items matching a free-text description (query). Give user_id to skip what they saw. {_CONSTRAINTS}",
            SemanticSearchInput,
            ItemsOutput,
            semantic_search,
        ),
        ToolSpec(
            "similar_items",
            "Find items similar to given items (ids or titles), by content (space=text), by who watched them "
            f"(space=model), or by both with shared genres (space=blend). {_CONSTRAINTS}",
            SimilarItemsInput,
            ItemsOutput,
            similar_items,
        ),
        ToolSpec(
            "top_items",
            "The catalogue's best items for anyone, no history needed: by quality (the shrunk mean rating), popularity, "
            f"or both. Give user_id to skip what they saw. {_CONSTRAINTS}",
            TopItemsInput,
            ItemsOutput,
            top_items,
        ),
        ToolSpec(
            "rank",
            "Reorder candidate items by: model (score for the user; variant=genre for the attribute-aware model), "
            "popularity, recency, text (match to query) or diversity.",
            RankInput,
            ItemsOutput,
            rank,
        ),
        ToolSpec(
            "lookup",
            "Find item ids by title; approximate spellings work.",
            LookupInput,
            LookupOutput,
            lookup,
        ),
        ToolSpec(
            "item_info",
            "Title, year, attributes and popularity of items by id.",
            ItemInfoInput,
            ItemInfoOutput,
            item_info,
        ),
        ToolSpec(
            "user_profile",
            "What a user's history shows: favourite genres and other attribute values with counts and how recently "
            "seen, recent and top-rated items, known user features.",
            UserProfileInput,
            UserProfileOutput,
            user_profile,
        ),
    )
}


class ToolResult(BaseModel):
    """Either `output` (the tool's output model) or `error`, never both."""

    tool: str
    ok: bool
    output: SerializeAsAny[BaseModel] | None = None
    error: ToolError | None = None
    elapsed_ms: float = 0.0

    def to_message(self) -> str:
        """The JSON an LLM gets back as the tool's reply: the output, or {"error": ...}."""
        if self.error is not None:
            return json.dumps({"error": self.error.model_dump(exclude_none=True)}, ensure_ascii=False)
        assert self.output is not None
        return self.output.model_dump_json(exclude_none=True)


def call_tool(toolbox: Toolbox, name: str, arguments: Mapping[str, Any] | str | None = None) -> ToolResult:
    """Validate `arguments` (a dict, or the JSON string an LLM's tool call carries) against
    the tool's input model, run it, and wrap the output or the error."""
    started = time.perf_counter()

    def failed(error: ToolError) -> ToolResult:
        return ToolResult(tool=name, ok=False, error=error, elapsed_ms=(time.perf_counter() - started) * 1000)

    spec = TOOLS.get(name)
    if spec is None:
        return failed(ToolError(code="unknown_tool", message=f"unknown tool {name!r}: the tools are {', '.join(TOOLS)}", valid=list(TOOLS)))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as err:
            return failed(ToolError(code="invalid_arguments", message=f"arguments are not valid JSON: {err}"))
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        return failed(ToolError(code="invalid_arguments", message=f"arguments must be a JSON object, got {type(arguments).__name__}"))
    try:
        args = spec.input_model.model_validate(dict(arguments))
        output = spec.fn(toolbox, args)
    except ValidationError as err:
        return failed(validation_error(spec.input_model, err))
    except ToolFailure as err:
        return failed(err.error)
    return ToolResult(tool=name, ok=True, output=output, elapsed_ms=(time.perf_counter() - started) * 1000)


_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than", "too_long", "too_short"}


def _number(bound: object) -> float:
    # annotated_types types a bound as merely comparable; the tools' bounds are all numbers
    return float(cast(SupportsFloat, bound))


def _bounds(model: type[BaseModel], field: str) -> tuple[float | None, float | None]:
    info = model.model_fields.get(field)
    low = high = None
    for item in info.metadata if info else ():
        if isinstance(item, annotated_types.Ge):
            low = _number(item.ge)
        elif isinstance(item, annotated_types.Gt):
            low = _number(item.gt)
        elif isinstance(item, annotated_types.Le):
            high = _number(item.le)
        elif isinstance(item, annotated_types.Lt):
            high = _number(item.lt)
        elif isinstance(item, annotated_types.MinLen):
            low = float(item.min_length)
        elif isinstance(item, annotated_types.MaxLen):
            high = float(item.max_length)
    return low, high


def validation_error(model: type[BaseModel], err: ValidationError) -> ToolError:
    """One ToolError for a pydantic ValidationError: the first problem decides the code and
    the field; the message lists them all."""
    problems = err.errors(include_url=False)
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    top = str(first["loc"][0]) if first["loc"] else ""
    message = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'arguments'}: {p['msg']}" for p in problems)
    kind = first["type"]
    if kind == "extra_forbidden":
        fields = list(model.model_fields)
        return ToolError(
            code="invalid_arguments",
            message=f"unknown argument {top!r}; valid arguments are {', '.join(fields)}",
            field=field,
            valid=fields,
        )
    if kind in _RANGE_ERRORS:
        low, high = _bounds(model, top)
        given = first.get("input")
        if kind in ("too_long", "too_short"):
            what, got = "a list of", f"{len(given)} items" if isinstance(given, list | tuple) else repr(given)
        else:
            what, got = "", repr(given)
        if low is not None and high is not None:
            text = f"{field} must be {what} between {low:g} and {high:g}".replace("  ", " ") + f", got {got}"
        else:
            text = message
        return ToolError(code="out_of_range", message=text, field=field, minimum=low, maximum=high)
    if kind in ("literal_error", "enum"):
        valid = re.findall(r"'([^']*)'", str((first.get("ctx") or {}).get("expected", "")))
        return ToolError(code="unknown_value", message=message, field=field, valid=valid or None)
    return ToolError(code="invalid_arguments", message=message, field=field)


# --- function-calling schemas ---------------------------------------------------------------


def _compact(node: Any) -> Any:
    """Drop titles, `default: null` and the null branch of optional fields: a smaller schema
    for small models (null is still accepted by validation)."""
    if isinstance(node, list):
        return [_compact(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):  # keys here are names, not keywords
            out[key] = {name: _compact(sub) for name, sub in value.items()}
        else:
            out[key] = _compact(value)
    branches = out.get("anyOf")
    if isinstance(branches, list):
        rest = [b for b in branches if b != {"type": "null"}]
        if len(rest) == 1 and len(rest) < len(branches):
            del out["anyOf"]
            out = {**rest[0], **out}
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = _compact(model.model_json_schema())
    schema.pop("description", None)  # the tool's description says it
    return schema


def _describe_values(schema: dict[str, Any], toolbox: Toolbox) -> None:
    """Name the values this toolbox accepts in the schema's descriptions (and enums where the
    set is small and fixed)."""
    properties = schema.get("properties", {})
    primary = toolbox.primary_attribute
    genres = list(toolbox.attribute_items.get(primary, {})) if primary else []
    for name in ("genres", "exclude_genres"):
        if name in properties and genres:
            properties[name]["description"] += f"; one or more of: {', '.join(genres)}"
    for name in ("attributes", "exclude_attributes"):
        if name in properties:
            kinds = [a for a in toolbox.attribute_items if a != primary]
            properties[name]["description"] += f"; attribute types: {', '.join(kinds) or 'none'}"
    if toolbox.year_span:
        for name in ("year_from", "year_to"):
            if name in properties:
                properties[name]["description"] += f"; catalogue years {toolbox.year_span[0]}-{toolbox.year_span[1]}"
    if "variant" in properties:
        properties["variant"]["enum"] = list(toolbox.variants)
    if "space" in properties:
        # a counted model (transitions) has no item vectors to search
        spaces = [v for v, model in toolbox.variants.items() if v not in (TEXT_SPACE, "model") and not isinstance(model, Counted)]
        properties["space"]["enum"] = [TEXT_SPACE, "model", BLEND_SPACE, *spaces]


def openai_tools(toolbox: Toolbox | None = None, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """OpenAI-style function specs (`{"type": "function", "function": {...}}`) for the named
    tools (default: all). With a toolbox, descriptions list its genres, attribute types and
    year span, and `variant` / `space` carry enums of what it has."""
    specs = [TOOLS[n] for n in names] if names is not None else list(TOOLS.values())
    out = []
    for spec in specs:
        schema = input_schema(spec.input_model)
        if toolbox is not None:
            schema = copy.deepcopy(schema)
            _describe_values(schema, toolbox)
        out.append({"type": "function", "function": {"name": spec.name, "description": spec.description, "parameters": schema}})
    return out


__all__ = ["TOOLS", "ToolResult", "ToolSpec", "call_tool", "input_schema", "openai_tools", "validation_error"]
