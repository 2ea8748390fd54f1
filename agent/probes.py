"""The rules a probe must pass to be sent: no probe that cannot change the list (issue 10).

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

from tools.profile import UserProfileOutput
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
