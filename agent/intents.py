"""The intent menu: a few concrete, attribute-level wishes drafted from a user's profile and the
catalogue, each a ready tool call with values and a description in words.

    menu = draft_menu(profile, toolbox, tools=["retrieve", "semantic_search", "similar_items"])
    menu[0].text       # "more Sci-Fi or Action, like your recent Alien and Aliens"
    menu[0].label      # "more Sci-Fi or Action": what the LLM's menu shows
    menu[0].tool, menu[0].arguments   # "retrieve", {"genres": ["Sci-Fi", "Action"]}

Why a menu: small models choose among short numbered options far better than they compose
tool calls (docs/planners.md: 63% of the 0.5B model's plan steps were valid, and the first asked for
nine genres). Every entry is valid by construction (values come from the catalogue), none
admits most of the catalogue (at most two genre values, see agent.probes.too_broad) and no two
are the same call. The description (phrased by `prompts/<domain>/intents.txt`) is also the
reason an item found by the intent is given; the LLM's menu shows it without example titles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.probes import call_key, too_broad
from agent.prompts import phrase
from tools.profile import HistoryItem, UserProfileOutput
from tools.registry import TOOLS
from tools.schemas import ScoredItem
from tools.titles import natural_title
from tools.toolbox import Toolbox

IntentKind = Literal["recent_genres", "decade", "more_like", "rediscover", "variant", "theme", "favourite"]
MAX_INTENTS = 8  # option scoring takes at most nine numbered options
RECENT = 5  # "like your last five"
DECADE = "year"  # the attribute type holding decades ("1990s")


class Intent(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: IntentKind
    text: str = Field(description="The intent in words, the reason given for what it finds")
    label: str = Field(description="The intent as the LLM's menu shows it: the text without its example titles")
    tool: str
    arguments: dict[str, Any] = Field(description="The call's own arguments; the agent adds the subject, k and the request's rules")
    genres: list[str] = Field(default_factory=list, description="Genres its words name that its arguments do not filter by")

    def key(self) -> str:
        return call_key(self.tool, self.arguments)


class MenuEntry(BaseModel):
    """An intent as run for one user: the arguments sent and the items it found."""

    intent: Intent
    arguments: dict[str, Any]
    items: list[ScoredItem]


class IntentWeight(BaseModel):
    """How much one intent counted for this user: the LLM's probability for it (uniform on fallback)."""

    kind: IntentKind
    text: str
    probability: float


def _title(item: HistoryItem) -> str:
    return natural_title(item.title)


def _and(words: Sequence[str], conjunction: str = "and") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _genres(item: HistoryItem, primary: str) -> list[str]:
    return item.attributes.get(primary, [])


def _examples(items: Sequence[HistoryItem], primary: str, genres: Collection[str], limit: int = 2) -> list[str]:
    """Titles among `items` with any of `genres`: the examples a description names."""
    return list(dict.fromkeys(_title(h) for h in items if set(_genres(h, primary)) & set(genres)))[:limit]


class _Drafter:
    """The intents one profile suggests, each phrased for the domain; None where the profile
    does not support one (no genres, no ratings, no second variant)."""

    def __init__(self, profile: UserProfileOutput, toolbox: Toolbox, domain: str) -> None:
        self.profile, self.toolbox, self.domain = profile, toolbox, domain
        self.primary = toolbox.primary_attribute or ""
        favourites = profile.attributes.get(self.primary, [])
        self.favourite = favourites[0].value if favourites else None

    def _say(self, name: str, titles: Sequence[str] = (), like: str = "like", **values: str) -> tuple[str, str]:
        """The intent's text (with its example titles, if any) and its menu label (without)."""
        examples = phrase(self.domain, like, titles=_and(titles)) if titles else ""
        return phrase(self.domain, name, like=examples, **values), phrase(self.domain, name, like="", **values)

    def all(self) -> list[Intent | None]:
        return [
            self.recent_genres(),
            self.decade(),
            self.more_like(),
            self.rediscover(),
            self.variant(),
            self.theme(),
            self.favourite_genre(),
        ]

    def recent_genres(self) -> Intent | None:
        recent = self.profile.recent_items[:RECENT]
        counts = Counter(g for h in recent for g in _genres(h, self.primary))
        if not counts:
            return None
        top = [g for g, _ in counts.most_common(2)]
        # "or": retrieve's genre filter admits an item having any one of them
        text, label = self._say("recent_genres", _examples(recent, self.primary, top), "like_recent", genres=_and(top, "or"))
        return Intent(kind="recent_genres", text=text, label=label, tool="retrieve", arguments={"genres": top})

    def decade(self) -> Intent | None:
        decades = self.profile.attributes.get(DECADE, [])
        genre = self.favourite
        if not decades or genre is None or not decades[0].value[:-1].isdigit():
            return None
        decade = decades[0].value
        start = int(decade[:-1])
        seen = [h for h in (*self.profile.recent_items, *self.profile.top_rated) if h.year is not None and start <= h.year <= start + 9]
        text, label = self._say("decade", _examples(seen, self.primary, [genre]), decade=decade, genre=genre)
        arguments = {"genres": [genre], "year_from": start, "year_to": start + 9}
        return Intent(kind="decade", text=text, label=label, tool="retrieve", arguments=arguments)

    def more_like(self) -> Intent | None:
        if not self.profile.recent_items:
            return None
        last = self.profile.recent_items[0]
        # "model": the backbone's item embeddings, what the people who chose it also chose
        text, label = self._say("more_like", title=_title(last))
        return Intent(kind="more_like", text=text, label=label, tool="similar_items", arguments={"items": [last.id], "space": "model"})

    def rediscover(self) -> Intent | None:
        """A genre the user rated highly (without ratings: chose often) but not among the last few."""
        lately = {g for h in self.profile.recent_items[:RECENT] for g in _genres(h, self.primary)}
        rated = self.profile.top_rated
        if rated:
            counts = Counter(g for h in rated for g in _genres(h, self.primary) if g not in lately)
        else:
            counts = Counter({v.value: v.count for v in self.profile.attributes.get(self.primary, []) if v.value not in lately})
        if not counts:
            return None
        genre = counts.most_common(1)[0][0]
        if rated:
            text, label = self._say("rediscover_rated", _examples(rated, self.primary, [genre]), genre=genre)
        else:
            text, label = self._say("rediscover_often", genre=genre)
        return Intent(kind="rediscover", text=text, label=label, tool="retrieve", arguments={"genres": [genre]})

    def variant(self) -> Intent | None:
        """What an attribute-aware backbone variant ranks within the user's favourite genre."""
        others = [v for v in self.toolbox.attribute_variants if v != self.toolbox.default_variant]
        if self.favourite is None or not others:
            return None
        text, label = self._say("variant", genre=self.favourite, variant=others[0])
        return Intent(kind="variant", text=text, label=label, tool="retrieve", arguments={"variant": others[0], "genres": [self.favourite]})

    def theme(self) -> Intent | None:
        """A free-text theme from the user's best-rated (else latest) item: its genres and title."""
        items = self.profile.top_rated or self.profile.recent_items
        if not items:
            return None
        best = items[0]
        genres = _genres(best, self.primary)[:2]
        query = f"{' '.join(genres)} like {_title(best)}" if genres else _title(best)
        text, label = self._say("theme", query=query)
        return Intent(kind="theme", text=text, label=label, tool="semantic_search", arguments={"query": query}, genres=genres)

    def favourite_genre(self) -> Intent | None:
        if self.favourite is None:
            return None
        seen = self.profile.top_rated or self.profile.recent_items
        text, label = self._say("favourite", _examples(seen, self.primary, [self.favourite]), genre=self.favourite)
        return Intent(kind="favourite", text=text, label=label, tool="retrieve", arguments={"genres": [self.favourite]})


def _valid(intent: Intent, toolbox: Toolbox) -> bool:
    """The call's arguments pass the tool's own schema, and no constraint admits most of the catalogue."""
    try:
        TOOLS[intent.tool].input_model.model_validate(intent.arguments)
    except ValidationError:
        return False
    primary = toolbox.primary_attribute
    return not (primary and too_broad(toolbox, primary, intent.arguments.get("genres", [])))


def draft_menu(profile: UserProfileOutput, toolbox: Toolbox, tools: Collection[str], domain: str = "movies") -> list[Intent]:
    """Up to MAX_INTENTS distinct, valid intents for this user, using only the allowed `tools`;
    fewer where the history says less."""
    menu: dict[str, Intent] = {}
    for intent in _Drafter(profile, toolbox, domain).all():
        if intent is not None and intent.tool in tools and _valid(intent, toolbox):
            menu.setdefault(intent.key(), intent)
    return list(menu.values())[:MAX_INTENTS]
