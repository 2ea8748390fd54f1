"""The rules every probe (a tool call the LLM or the menu chose, or the caller planned) is made
under, and those it must pass to be sent: no probe that cannot change the list.

The request's subject, exclusions and hard constraints are imposed on its arguments (`impose`):
constraints only narrow. Its size is capped (`probe_arguments`).

A constraint that admits more than half of an attribute's values (nine genres of nineteen, one
of them `unknown`) filters almost nothing: its items are the backbone's own seed. It is
corrected, narrowed to the values this user watches most. A call made before, or one whose
items are all already in the pool, adds nothing; the agent drops it. Both are counted with a
typed trace code (`broad_call`, `repeated_call`, `known_items`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agent.request import AGENT_OWNED, RecommendRequest
from tools.constraints import Filters
from tools.profile import UserProfileOutput
from tools.registry import TOOLS
from tools.toolbox import Toolbox, normalize

# A corrected constraint keeps at most this many values: "Sci-Fi and Action", not a list.
TRIMMED_VALUES = 2


def call_key(tool: str, arguments: dict[str, Any]) -> str:
    """One string per distinct call (argument order does not matter): what "the same call" means."""
    return json.dumps({"name": tool, "arguments": arguments}, sort_keys=True, ensure_ascii=False, default=str)


def too_broad(toolbox: Toolbox, attribute: str, values: Sequence[str]) -> bool:
    """Whether an "any of" constraint names more than half of the attribute's values."""
    known = toolbox.attribute_items.get(attribute, {})
    return bool(known) and len({normalize(v) for v in values}) > len(known) / 2


def _trimmed(given: list[str], favourites: list[str]) -> list[str]:
    """The given values the user watches most (the user's own order); where none of them is among
    the user's favourites, the favourites themselves."""
    wanted = {normalize(v) for v in given}
    kept = [v for v in favourites if normalize(v) in wanted]
    return (kept or favourites or given)[:TRIMMED_VALUES]


def trim_broad(toolbox: Toolbox, profile: UserProfileOutput, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The arguments with every too-broad "any of" constraint (`genres`, `attributes.KIND`)
    narrowed to the user's top values, and a note per correction (empty: nothing was broad)."""
    out = dict(arguments)
    notes: list[str] = []
    primary = toolbox.primary_attribute

    def favourites(attribute: str) -> list[str]:
        return [v.value for v in profile.attributes.get(attribute, [])]

    genres = out.get("genres")
    if primary and isinstance(genres, list) and too_broad(toolbox, primary, genres):
        out["genres"] = _trimmed(genres, favourites(primary))
        notes.append(f"genres: {len(genres)} of {len(toolbox.attribute_items[primary])} values trimmed to {out['genres']}")
    attributes = out.get("attributes")
    if isinstance(attributes, dict):
        narrowed = dict(attributes)
        for kind, values in attributes.items():
            attribute = kind if kind in toolbox.attribute_items else None
            if attribute and isinstance(values, list) and too_broad(toolbox, attribute, values):
                narrowed[kind] = _trimmed(values, favourites(attribute))
                notes.append(f"attributes.{kind}: {len(values)} values trimmed to {narrowed[kind]}")
        out["attributes"] = narrowed
    return out, notes


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value in (None, "") else [value]


def _narrow(given: Any, imposed: list[str] | None) -> Any:
    """An "any of" list under a hard constraint: the given values the constraint allows, or the
    constraint's own values where none of the given ones is allowed."""
    if not imposed:
        return given
    allowed = {normalize(v) for v in imposed}
    kept = [v for v in _as_list(given) if isinstance(v, str) and normalize(v) in allowed]
    return kept or list(imposed)


def _union(given: Any, imposed: list[str] | None) -> Any:
    if not imposed:
        return given
    return list(dict.fromkeys([*_as_list(given), *imposed]))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def impose(name: str, arguments: dict[str, Any], request: RecommendRequest) -> dict[str, Any]:
    """The arguments a tool call is made with: the LLM's (or a planned call's) choice without the
    agent-owned ones, plus the request's subject and, for the retrieval tools, its exclusions and
    hard constraints. Constraints only narrow: genres intersect (or are replaced), exclusions
    add up, a year range can only shrink."""
    spec = TOOLS[name]
    out = {k: v for k, v in arguments.items() if k not in AGENT_OWNED}
    if issubclass(spec.input_model, Filters):
        c = request.constraints or Filters()
        excluded = [*request.exclude, *(c.exclude_ids or [])]
        if excluded:
            out["exclude_ids"] = _union(excluded, _as_list(out.get("exclude_ids")))
        out["genres"] = _narrow(out.get("genres"), c.genres)
        out["exclude_genres"] = _union(out.get("exclude_genres"), c.exclude_genres)
        if c.year_from is not None or c.year_to is not None:
            given_from, given_to = _int(out.get("year_from")), _int(out.get("year_to"))
            low = max((y for y in (given_from, c.year_from) if y is not None), default=None)
            high = min((y for y in (given_to, c.year_to) if y is not None), default=None)
            if low is not None and high is not None and low > high:  # the LLM's range left the allowed one
                low, high = c.year_from, c.year_to
            out["year_from"], out["year_to"] = low, high
        for key, combine in (("attributes", _narrow), ("exclude_attributes", _union)):
            imposed = getattr(c, key) or {}
            if imposed:
                found = out.get(key)
                given: dict[str, Any] = found if isinstance(found, dict) else {}
                out[key] = {**given, **{kind: combine(given.get(kind), values) for kind, values in imposed.items()}}
        out = {k: v for k, v in out.items() if v is not None}
    if "user_id" in spec.input_model.model_fields:
        out.update(request.subject())
    return out


def probe_arguments(name: str, arguments: dict[str, Any], request: RecommendRequest, probe_k: int) -> dict[str, Any]:
    """A probe's arguments as sent: the request's subject, exclusions and constraints imposed, k
    capped at `probe_k`."""
    out = impose(name, arguments, request)
    requested = out.get("k")
    out["k"] = min(requested, probe_k) if isinstance(requested, int) and requested > 0 else probe_k
    return out
