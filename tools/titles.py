"""How an item's title is written for people and prompts, in one place.

natural_title("Matrix, The")            -> "The Matrix"
titled("Alien", 1979)                   -> "Alien (1979)"   (no second year when the title has one)
item_line("Alien", 1979, ["Horror"])    -> "Alien (1979) - Horror"
"""

from __future__ import annotations

from collections.abc import Iterable

_ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "das", "der", "die", "el")


def natural_title(title: str) -> str:
    """A catalogue title as people say it: "Matrix, The" -> "The Matrix"."""
    head, sep, tail = title.rpartition(", ")
    return f"{tail} {head}" if sep and tail.casefold() in _ARTICLES else title


def titled(title: str, year: int | None, natural: bool = False) -> str:
    """The title with its year in brackets, unless there is no year or the title already has it;
    `natural` also moves a trailing article to the front."""
    name = natural_title(title) if natural else title
    return name if year is None or str(year) in name else f"{name} ({year})"


def item_line(title: str, year: int | None, values: Iterable[str] = ()) -> str:
    """One line for a list in a prompt or a reply: "Title (year) - value, value"."""
    shown = ", ".join(values)
    return titled(title, year) + (f" - {shown}" if shown else "")
