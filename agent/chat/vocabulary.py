"""The wish vocabulary: what the words of a wish ask of a catalogue, from a reviewed file per
domain (`prompts/<domain>/wishes.txt`): genres preferred or excluded by a mood or an audience
("feel-good", "for adults"), an order by the catalogue's own ratings ("the best"), years
relative to the catalogue's span ("recent", "old"), and the parts the catalogue cannot express
("starring", "set in", "gory"), which the reply names instead of matching words.

    vocabulary = Vocabulary.load("movies", genres)
    for match in vocabulary.find(words): match.start, match.size, match.effects
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal, cast, get_args

from agent.prompts import wish_words
from tools.toolbox import normalize

# What a catalogue of titles, years and genres cannot say; "other": words no rule could use.
UnreadKind = Literal["cast", "director", "plot", "running_time", "gore", "setting", "personal", "other"]
UNREAD_KINDS: tuple[str, ...] = get_args(UnreadKind)
Years = Literal["recent", "old"]
RECENT_YEARS = 10  # "recent": the catalogue's last decade
OLD_BEFORE_END = 31  # "old": up to 31 years before the catalogue's end (1969 for MovieLens)


@dataclass(frozen=True)
class Effects:
    prefer: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    quality: bool = False
    years: Years | None = None
    unread: tuple[UnreadKind, ...] = ()


@dataclass(frozen=True)
class Match:
    start: int  # first word
    size: int  # words
    effects: Effects


def parse_effects(text: str, genres: Sequence[str]) -> Effects:
    """`+Genre -Genre =quality =recent =old !kind`, held to the catalogue's genres (a genre it
    lacks is left out) and the known kinds (an unknown one is an error in the file)."""
    canonical = {normalize(g): g for g in genres}
    prefer: list[str] = []
    exclude: list[str] = []
    unread: list[UnreadKind] = []
    quality, years = False, None
    for token in text.split():
        sign, name = token[0], token[1:]
        if sign in "+-":
            genre = canonical.get(normalize(name))
            if genre is not None:
                (prefer if sign == "+" else exclude).append(genre)
        elif token == "=quality":
            quality = True
        elif token in ("=recent", "=old"):
            years = "recent" if token == "=recent" else "old"
        elif sign == "!" and name in UNREAD_KINDS:
            unread.append(cast(UnreadKind, name))
        else:
            raise ValueError(f"unknown effect {token!r} in the wish vocabulary")
    return Effects(tuple(prefer), tuple(exclude), quality, cast(Years | None, years), tuple(unread))


class Vocabulary:
    """Phrases (as word tuples) -> effects, matched longest first."""

    def __init__(self, entries: dict[tuple[str, ...], Effects]) -> None:
        self.entries = entries
        self.longest = max((len(p) for p in entries), default=0)

    @classmethod
    def load(cls, domain: str, genres: Sequence[str]) -> Vocabulary:
        return _load(domain, tuple(genres))

    def find(self, words: Sequence[str]) -> list[Match]:
        """Each phrase in `words` (lower-case word tokens), in order, none overlapping."""
        keys = [normalize(w) for w in words]
        found: list[Match] = []
        used: set[int] = set()
        for size in range(min(self.longest, len(keys)), 0, -1):
            for start in range(len(keys) - size + 1):
                span = set(range(start, start + size))
                effects = None if span & used else self.entries.get(tuple(keys[start : start + size]))
                if effects is not None:
                    found.append(Match(start, size, effects))
                    used |= span
        return sorted(found, key=lambda m: m.start)


@cache
def _load(domain: str, genres: tuple[str, ...]) -> Vocabulary:
    entries: dict[tuple[str, ...], Effects] = {}
    for phrases, text in wish_words(domain):
        effects = parse_effects(text, genres)
        for phrase in phrases.split(","):
            words = tuple(normalize(w) for w in phrase.replace("-", " ").split() if w)
            if words:
                entries[words] = effects
    return Vocabulary(entries)
