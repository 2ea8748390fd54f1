"""A session's standing preferences as chips, and a typed removal of one of them.

The web page shows each constraint the person set ("no Horror", "1990-1999", "more like Heat")
as a chip; a click sends the chip's `Removal` back, never a message the rules would have to read.

    chips(session.constraints, toolbox.spoken_title)   # [Chip(label="no Horror", removal=...)]
    removed(session.constraints, Removal(kind="exclude_genre", value="Horror"))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from agent.chat import SessionConstraints
from agent.pool import constraint_text

RemovalKind = Literal["genre", "exclude_genre", "prefer_genre", "years", "quality", "query", "like"]


class Removal(BaseModel):
    """One standing preference to drop; `value` names which genre or liked item (years and the
    free-text wish have one each)."""

    kind: RemovalKind
    value: str | None = Field(None, max_length=200)


class Chip(BaseModel):
    label: str = Field(description="The preference in words: no Horror, 1990-1999")
    removal: Removal


class Preferences(BaseModel):
    """The session's constraints and their chips, as the page shows them."""

    constraints: SessionConstraints
    chips: list[Chip]


class NotAPreference(ValueError):
    """The removal names nothing the session holds."""


def chips(constraints: SessionConstraints, title: Callable[[str], str]) -> list[Chip]:
    out = [Chip(label=genre, removal=Removal(kind="genre", value=genre)) for genre in constraints.genres]
    out += [
        Chip(label=constraint_text({"exclude_genres": [genre]}), removal=Removal(kind="exclude_genre", value=genre))
        for genre in constraints.exclude_genres
    ]
    out += [Chip(label=f"preferably {genre}", removal=Removal(kind="prefer_genre", value=genre)) for genre in constraints.prefer_genres]
    if constraints.quality:
        out.append(Chip(label="the best-rated first", removal=Removal(kind="quality")))
    if constraints.year_from is not None or constraints.year_to is not None:
        years = constraint_text({"year_from": constraints.year_from, "year_to": constraints.year_to})
        out.append(Chip(label=years, removal=Removal(kind="years")))
    if constraints.query:
        out.append(Chip(label=f'"{constraints.query}"', removal=Removal(kind="query")))
    out += [Chip(label=f"more like {title(item)}", removal=Removal(kind="like", value=item)) for item in constraints.like]
    return out


def removed(constraints: SessionConstraints, removal: Removal) -> SessionConstraints:
    """The constraints without the one named; NotAPreference when the session does not hold it."""
    c = constraints.model_copy(deep=True)
    held: list[str] | None = {"genre": c.genres, "exclude_genre": c.exclude_genres, "prefer_genre": c.prefer_genres, "like": c.like}.get(
        removal.kind
    )
    if held is not None:
        if removal.value not in held:
            raise NotAPreference(f"no {removal.kind} {removal.value!r} in this session's preferences")
        held.remove(removal.value)
    elif removal.kind == "years":
        if c.year_from is None and c.year_to is None:
            raise NotAPreference("this session has no year range")
        c.year_from = c.year_to = None
    elif removal.kind == "quality":
        if not c.quality:
            raise NotAPreference("this session does not ask for the best-rated first")
        c.quality = False
    else:
        if not c.query:
            raise NotAPreference("this session has no free-text wish")
        c.query = None
    return c
