"""A conversation over the agent: constraints that accumulate across turns, persisted per session.

    conversation = Conversation.open(agent_factory, db="sessions.sqlite")
    conversation.turn("s1", "I like Toy Story and Heat")      # cold start: titles via lookup
    conversation.turn("s1", "no horror, older films")         # constraints accumulate
    conversation.turn("s1", "more like the second one")       # -> similar_items on that item
    conversation.turn("s1", "not that one")                   # rejected, never shown again

One turn is a small LangGraph graph, `interpret -> respond`, compiled with a SQLite checkpointer
keyed by the session id, so a conversation survives restarts. `interpret` turns the message into
a `TurnIntent` (the LLM's JSON reading and a deterministic rule reading of common phrasings,
rules first: a 0.5B model's slip cannot break a turn) and applies it to the
`ConversationState`; `respond` runs the agent with the accumulated constraints imposed on every
tool call (`RecommendRequest.constraints`), the person's explicit asks as planned calls
(`RecommendRequest.probes`: "more like X" -> similar_items, free text -> retrieve with a query),
and what was shown or rejected excluded. Every item comes with a reason naming the tool that
found it. The message is data: it can change constraints (validated against the catalogue),
never which tools run, for whom, or which items may be listed.
"""

from __future__ import annotations

import re
import sqlite3
from collections import OrderedDict
import statistics
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field, field_validator

from agent.llm.base import ChatMessage, LLMError
from agent.llm.parsing import ask_structured
from agent.nodes import RecommendError
from agent.recommend import Agent
from agent.runtime import AgentFactory, uses_llm
from agent.state import PlannedCall, Recommendation, RecommendedItem, RecommendRequest
from tools.constraints import Filters
from tools.schemas import Provenance, UnknownValue
from tools.toolbox import Toolbox, natural_title, normalize

MAX_MESSAGE_CHARS = 4000
KEPT_TURNS = 100  # the turn log kept per session (constraints, shown and rejected are kept whole)
KEPT_RECOMMENDATIONS = 256  # sessions whose last full Recommendation is kept in memory
TITLE_MATCH = 85.0  # lookup similarity (0-100) from which a named title counts as found

# --- records ---------------------------------------------------------------------------------


class SessionConstraints(BaseModel):
    """What the person has asked for so far; every retrieval tool call is held to it."""

    genres: list[str] = Field(default_factory=list, description="Wanted: items with at least one of these")
    exclude_genres: list[str] = Field(default_factory=list)
    year_from: int | None = None
    year_to: int | None = None
    query: str | None = Field(None, description="The standing free-text wish")
    like: list[str] = Field(default_factory=list, description="Item ids to find more like")

    def filters(self) -> Filters | None:
        if not (self.genres or self.exclude_genres or self.year_from is not None or self.year_to is not None):
            return None
        return Filters(
            genres=self.genres or None, exclude_genres=self.exclude_genres or None,
            year_from=self.year_from, year_to=self.year_to,
        )  # fmt: skip

    def describe(self, title: Callable[[str], str] | None = None) -> str:
        parts = []
        if self.genres:
            parts.append(" or ".join(self.genres))
        if self.exclude_genres:
            parts.append("no " + ", no ".join(self.exclude_genres))
        if self.year_from is not None and self.year_to is not None:
            parts.append(f"{self.year_from}-{self.year_to}")
        elif self.year_from is not None:
            parts.append(f"from {self.year_from}")
        elif self.year_to is not None:
            parts.append(f"up to {self.year_to}")
        if self.query:
            parts.append(f'"{self.query}"')
        if self.like:
            parts.append("more like " + ", ".join(title(i) if title else i for i in self.like))
        return "; ".join(parts)


class ShownItem(BaseModel):
    id: str
    title: str
    year: int | None = None
    genres: list[str] = Field(default_factory=list)
    reason: str
    tool: str = Field(description="The tool whose result the reason cites")


class TurnIntent(BaseModel):
    """What one message asks for. Positions are 1-based places in the list shown last."""

    genres: list[str] = Field(default_factory=list, description="Genres wanted now")
    exclude_genres: list[str] = Field(default_factory=list, description="Genres not wanted")
    allow_genres: list[str] = Field(default_factory=list, description="Genres allowed again (lifts an exclusion)")
    any_genre: bool = Field(False, description="Drop every genre constraint")
    year_from: int | None = None
    year_to: int | None = None
    any_year: bool = Field(False, description="Drop the year constraint")
    era: Literal["older", "newer"] | None = Field(None, description="Older or newer than what was shown")
    more_like: list[int] = Field(default_factory=list, description="Positions to find more like")
    reject: list[int] = Field(default_factory=list, description="Positions not wanted")
    reject_that: bool = Field(False, description='"not that one": the item last talked about')
    more_like_that: bool = Field(False, description='"more like that one"')
    liked_titles: list[str] = Field(default_factory=list, description="Titles the person likes (added to their history)")
    similar_titles: list[str] = Field(default_factory=list, description='Titles to find more like ("more like Alien")')
    query: str | None = Field(None, description="Free-text wish not covered by the other fields")
    repeat: bool = Field(False, description="Items already shown may come again")
    reset: bool = Field(False, description="Start the constraints over")

    @field_validator("genres", "exclude_genres", "allow_genres", "liked_titles", "similar_titles", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("more_like", "reject", mode="before")
    @classmethod
    def _positions(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, int | str) else value

    def empty(self) -> bool:
        return self == TurnIntent()


class Turn(BaseModel):
    message: str
    intent: TurnIntent
    parsed_by: str
    notes: list[str] = Field(default_factory=list)
    items: list[ShownItem] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list, description="The tool calls the agent made")
    reply: str = ""
    error: str | None = None


class ConversationState(BaseModel):
    session_id: str
    user_id: str | None = Field(None, description="A known user of the dataset; None for a cold start")
    liked: list[str] = Field(default_factory=list, description="Item ids the person named as liked (their history when new)")
    constraints: SessionConstraints = Field(default_factory=SessionConstraints)
    rejected: list[str] = Field(default_factory=list)
    shown: list[str] = Field(default_factory=list, description="Every item shown so far, in order")
    last: list[ShownItem] = Field(default_factory=list, description="The list shown last: what positions refer to")
    focus: str | None = Field(None, description='The item last talked about ("that one")')
    turns: list[Turn] = Field(default_factory=list, description=f"The last {KEPT_TURNS} turns")
    turn_count: int = 0


class TurnResult(BaseModel):
    session_id: str
    reply: str
    items: list[ShownItem]
    constraints: SessionConstraints
    notes: list[str] = Field(default_factory=list)
    parsed_by: str
    error: str | None = None
    turn: int


class ConversationConfig(BaseModel):
    intent: Literal["auto", "rules", "llm", "both"] = Field(
        "auto", description="How messages are read: rules, the LLM, or both (rules first); auto: both when there is an LLM"
    )
    intent_max_tokens: int = 160
    similar_space: str = Field("model", description='Space for "more like": model (watched by the same people) or text')
    title_match: float = TITLE_MATCH
    max_message_chars: int = MAX_MESSAGE_CHARS


class ConversationError(ValueError):
    """A turn that cannot be taken (unknown user, a session bound to another user, an empty
    message); the message says why."""


class SessionConflict(ConversationError):
    pass


class UnknownUser(ConversationError):
    pass


# --- the rule reading ------------------------------------------------------------------------

SYNONYMS: dict[str, list[str]] = {
    "Horror": ["scary", "horror", "horrors", "slasher", "slashers", "spooky", "creepy"],
    "Sci-Fi": ["scifi", "sci fi", "science fiction", "sf"],
    "Children's": ["kids", "kid", "children", "childrens", "family", "for kids"],
    "Animation": ["animated", "animation", "cartoon", "cartoons", "anime"],
    "Comedy": ["funny", "comedy", "comedies", "comic", "hilarious", "lighthearted", "light hearted"],
    "Romance": ["romantic", "romance", "romances", "love story", "love stories"],
    "Documentary": ["documentary", "documentaries", "docs"],
    "Film-Noir": ["noir", "film noir"],
    "Western": ["western", "westerns", "cowboy", "cowboys"],
    "Musical": ["musical", "musicals"],
    "Mystery": ["mystery", "mysteries", "whodunit", "whodunnit"],
    "Thriller": ["thriller", "thrillers", "suspense", "suspenseful"],
    "War": ["war", "war films", "war movies"],
    "Crime": ["crime", "gangster", "gangsters", "mafia"],
    "Drama": ["drama", "dramas", "dramatic"],
    "Action": ["action", "action packed"],
    "Adventure": ["adventure", "adventures"],
    "Fantasy": ["fantasy", "magic", "magical"],
}
NEGATIONS = {
    "no", "not", "without", "avoid", "hate", "dislike", "skip", "none", "nothing", "except", "exclude",
    "excluding", "less", "fewer", "enough", "dont", "never", "stop", "minus", "nor", "neither", "tired",
}
ALLOWS = {"fine", "ok", "okay", "allow", "allowed", "include", "back", "mind", "welcome"}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "6th": 6, "7th": 7, "8th": 8,
    "9th": 9, "10th": 10, "last": -1, "top": 1,
}
DECADE_WORDS = {
    "twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
    "seventies": 1970, "eighties": 1980, "nineties": 1990, "noughties": 2000,
}
STOPWORDS = set(
    """a an the i me my we you your it its this that these those is are was were be been am do does did
    of in on at to for from with by and or but so if as about into over than then there here
    please pls thanks thank hi hello hey ok okay yes yeah no not any some something anything more less
    want wanted would like likes liked love loved show give recommend recommendation recommendations suggest
    watch watching see seen movie movies film films one ones item items title titles pick picks list
    can could should will just really very also maybe now again instead other another kind sort type good great
    what which who how why get got let lets need maybe today tonight next evening night weekend mood feel
    feeling ideas idea options suggestions choose fine sure cool nice thing things stuff bit little lot""".split()
)
_CLAUSE = re.compile(r"[,.;!?]|\bbut\b|\bhowever\b|\bthough\b|\balthough\b|\bwhile\b")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_ORDINAL = r"(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|1st|2nd|3rd|4th|5th|6th|7th|8th|9th|10th|last|top)"
_NOUN = r"(?:one|movie|film|item|pick|title|book|place|suggestion)"
_POSITION = re.compile(
    rf"\bthe\s+{_ORDINAL}\b(?:\s+{_NOUN}\b)?|\b{_ORDINAL}\s+{_NOUN}\b"
    r"|#\s*(\d{1,2})\b|\bnumber\s+(\d{1,2})\b|\bno\.\s*(\d{1,2})\b|\bitem\s+(\d{1,2})\b"
)
_THAT_ONE = re.compile(r"\b(?:that|this|the)\s+(?:one|movie|film|title|book|place)\b|\bit\b")
_LIKE_TRIGGER = re.compile(
    r"\b(?:i\s+(?:really\s+|also\s+|do\s+)?(?:like|liked|love|loved|enjoy|enjoyed|adore|adored|dig)|"
    r"my\s+favou?rites?\s+(?:are|is|include|were)|(?:big\s+)?fan\s+of|i'm\s+into|i\s+am\s+into)\s+(.+)"
)
_MORE_LIKE = re.compile(r"\b(?:more\s+like|similar\s+to|something\s+like|stuff\s+like|films?\s+like|movies?\s+like|in\s+the\s+vein\s+of)\s+(.+)")
_QUOTED = re.compile(r"[\"“”]([^\"“”]{2,80})[\"“”]")
_RANGE = re.compile(r"\b(?:between\s+)?((?:19|20)\d\d)\s*(?:-|–|to|and|until|till)\s*((?:19|20)\d\d)\b")
_DECADE = re.compile(r"(?:\b(before|after|since|until|pre|post|older\s+than|newer\s+than)[\s-]+)?(?:the\s+)?(?:\b((?:19|20)\d)0s\b|(?<![\d])'?(\d)0s\b|\b(twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties|noughties)\b)")
_YEAR_BOUND = re.compile(r"\b(before|after|since|until|till|from|pre|post|older\s+than|newer\s+than|earlier\s+than|later\s+than|up\s+to|prior\s+to)[\s-]+((?:19|20)\d\d)\b")
_ERA_OLDER = re.compile(r"\b(older|old|classic|classics|vintage|earlier|oldies)\b")
_ERA_NEWER = re.compile(r"\b(newer|recent|more\s+recent|modern|latest|contemporary)\b")
_ANY_YEAR = re.compile(r"\bany\s+(?:year|decade|era|age|time)\b")
_ANY_GENRE = re.compile(r"\b(?:any|all|whatever)\s+genres?\b|\bno\s+genre\s+(?:filter|constraint)s?\b")
_REPEAT = re.compile(r"\b(?:show|list|give)\b.*\bagain\b|\brepeat\b|\bsame\s+(?:list|ones)\b|\binclud\w*\s+(?:the\s+)?ones\s+(?:you\s+)?(?:already\s+)?(?:showed|shown)\b")
_RESET = re.compile(r"\b(?:start\s+(?:over|again|afresh)|reset|clear\s+(?:all\s+|the\s+|my\s+)?(?:filters|constraints)|forget\s+(?:it|that|everything|all))\b")
_POSITIVE = re.compile(r"\b(?:more|like|similar|love|loved|good|great|nice|yes|want)\b")
_REJECT_WORDS = re.compile(r"\b(?:not|no|don't|dont|drop|remove|seen|skip|hate|dislike|without|nope|meh|boring|already|except|never)\b")


def _clean(text: str) -> str:
    return " ".join(text.replace("’", "'").split())


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class RuleReader:
    """A deterministic reading of common phrasings, for one catalogue's genre values."""

    def __init__(self, toolbox: Toolbox, title_match: float = TITLE_MATCH) -> None:
        self.toolbox = toolbox
        self.title_match = title_match
        primary = toolbox.primary_attribute
        self.genres: list[str] = list(toolbox.attribute_items.get(primary, {})) if primary else []
        keys: dict[str, str] = {}
        for value in self.genres:
            key = normalize(value)
            for form in (key, key + "s", key[:-1] + "ies" if key.endswith("y") else key + "s"):
                keys.setdefault(form, value)
        canonical = {normalize(v): v for v in self.genres}
        for name, words in SYNONYMS.items():
            value = canonical.get(normalize(name))
            if value is None:
                continue
            for word in words:
                keys.setdefault(normalize(word), value)
        self.genre_keys = keys
        self.max_words = max((len(w.split()) for ws in SYNONYMS.values() for w in ws), default=1)

    # --- pieces ------------------------------------------------------------------------------

    def genre_mentions(self, clause: str) -> list[tuple[int, int, str]]:
        """(first word, word count, canonical genre) for each genre mentioned, in order."""
        words = _words(clause)
        found: list[tuple[int, int, str]] = []
        used: set[int] = set()
        for size in range(min(self.max_words, 3), 0, -1):
            for start in range(len(words) - size + 1):
                span = set(range(start, start + size))
                if span & used:
                    continue
                value = self.genre_keys.get(normalize("".join(words[start : start + size])))
                if value is not None:
                    found.append((start, size, value))
                    used |= span
        return sorted(found)

    def title(self, text: str) -> str | None:
        """The item id of a title the text names, if the match is close enough."""
        text = text.strip(" \"'“”.!?").strip()
        words = _words(text)
        if not words or len(text) > 120:
            return None
        if all(w in STOPWORDS or normalize(w) in self.genre_keys for w in words) or _POSITION.fullmatch(text.lower()):
            return None
        hits = self.toolbox.fuzzy_titles(text, limit=1, cutoff=self.title_match * 0.7)
        if not hits or hits[0][1] < self.title_match:
            return None
        item = self.toolbox.dataset.item(int(hits[0][0]))
        # a word that merely occurs in a long title ("name" in "In the Name of the Father") is no title
        if hits[0][1] < 100 and len(normalize(text)) < 0.4 * len(normalize(natural_title(item.title))):
            return None
        return item.id

    def titles(self, tail: str) -> tuple[list[str], list[str]]:
        """Titles in a list like "Toy Story, Heat and Alien": (item ids found, the pieces that
        named them). The split reading wins when every piece is a title; else the whole text as
        one title ("The Good, the Bad and the Ugly"); else the pieces that are titles."""
        split = [p.strip() for p in re.split(r",|;|\band\b|&|\bor\b|\bplus\b|\bas well as\b", tail) if p.strip()]
        found = [(piece, self.title(piece)) for piece in split]
        if len(split) > 1 and all(item for _, item in found):
            return self._unique(found)
        whole = self.title(tail)
        if whole is not None:
            return [whole], [tail.strip()]
        return self._unique(found)

    @staticmethod
    def _unique(found: list[tuple[str, str | None]]) -> tuple[list[str], list[str]]:
        ids: list[str] = []
        pieces: list[str] = []
        for piece, item in found:
            if item is not None and item not in ids:
                ids.append(item)
                pieces.append(piece)
        return ids, pieces

    # --- the reading -------------------------------------------------------------------------

    def read(self, message: str, cold: bool = False) -> TurnIntent:
        """`cold`: the person has no history yet, so a bare list of titles counts as liked."""
        text = _clean(message).lower().replace("anything but", "no").replace("all but", "no")
        intent = TurnIntent()
        rest = text

        # titles first, so that "more like Star Wars" is not read as the genre War
        for match in _QUOTED.finditer(message):
            found = self.title(match.group(1))
            if found:
                intent.liked_titles.append(match.group(1).strip())
                rest = rest.replace(match.group(1).lower(), " ")
        more = _MORE_LIKE.search(rest)
        if more and not _POSITION.search(more.group(1)) and not _THAT_ONE.match(more.group(1).strip()):
            ids, pieces = self.titles(_CLAUSE.split(more.group(1))[0])
            if ids:
                intent.similar_titles += pieces
                for piece in pieces:
                    rest = rest.replace(piece.lower(), " ")
        like = _LIKE_TRIGGER.search(rest)
        if like and not _POSITION.search(like.group(1)) and not _THAT_ONE.match(like.group(1).strip()):
            ids, pieces = self.titles(re.split(r"[.;!?]|\bbut\b", like.group(1))[0])
            intent.liked_titles += [p for p in pieces if p not in intent.liked_titles]
            for piece in pieces:
                rest = rest.replace(piece.lower(), " ")
        if cold and not intent.liked_titles:
            ids, pieces = self.titles(text)
            if ids:
                intent.liked_titles = pieces
                for piece in pieces:
                    rest = rest.replace(piece.lower(), " ")

        if _RESET.search(rest):
            intent.reset = True
            rest = _RESET.sub(" ", rest)
        if _REPEAT.search(rest):
            intent.repeat = True
        if _ANY_GENRE.search(rest):
            intent.any_genre = True
            rest = _ANY_GENRE.sub(" ", rest)
        if _ANY_YEAR.search(rest):
            intent.any_year = True
            rest = _ANY_YEAR.sub(" ", rest)
        rest = self._years(rest, intent)
        rest = self._positions(rest, intent)

        content: list[str] = []
        for clause in _CLAUSE.split(rest):
            words = _words(clause)
            mentions = self.genre_mentions(clause)
            mentioned = {i for start, size, _ in mentions for i in range(start, start + size)}
            content += [w for i, w in enumerate(words) if i not in mentioned]
            for start, size, genre in mentions:
                before = {normalize(w) for w in words[:start]}
                after = {normalize(w) for w in words[start + size :]}
                if before & NEGATIONS:
                    intent.exclude_genres.append(genre)
                elif (before | after) & ALLOWS:
                    intent.allow_genres.append(genre)
                else:
                    intent.genres.append(genre)
        for field in ("genres", "exclude_genres", "allow_genres"):
            setattr(intent, field, list(dict.fromkeys(getattr(intent, field))))

        content = [w for w in content if w not in STOPWORDS and normalize(w) not in NEGATIONS and normalize(w) not in ALLOWS and not w.isdigit()]
        if len(content) >= 2 or (len(content) == 1 and len(content[0]) >= 5 and intent.empty()):
            intent.query = " ".join(content)[:200]
        return intent

    def _years(self, rest: str, intent: TurnIntent) -> str:
        match = _RANGE.search(rest)
        if match:
            low, high = sorted((int(match.group(1)), int(match.group(2))))
            intent.year_from, intent.year_to = low, high
            return rest.replace(match.group(0), " ")
        match = _DECADE.search(rest)
        if match:
            bound = (match.group(1) or "").split()[0] if match.group(1) else ""
            if match.group(2):
                start = int(match.group(2)) * 10
            elif match.group(3):
                digit = int(match.group(3))
                start = (2000 if digit <= 2 else 1900) + digit * 10
            else:
                start = DECADE_WORDS[match.group(4)]
            if bound in ("before", "until", "pre", "older"):
                intent.year_to = start - 1
            elif bound in ("after", "post", "newer"):
                intent.year_from = start + 10
            elif bound == "since":
                intent.year_from = start
            else:
                intent.year_from, intent.year_to = start, start + 9
            return rest.replace(match.group(0), " ")
        for match in _YEAR_BOUND.finditer(rest):
            word, year = match.group(1).split()[0], int(match.group(2))
            if word in ("before", "pre", "older", "earlier", "prior"):
                intent.year_to = year - 1
            elif word in ("until", "till", "up"):
                intent.year_to = year
            elif word in ("after", "post", "newer", "later"):
                intent.year_from = year + 1
            else:  # since, from
                intent.year_from = year
            rest = rest.replace(match.group(0), " ")
        if intent.year_from is None and intent.year_to is None:
            if _ERA_OLDER.search(rest):
                intent.era = "older"
                rest = _ERA_OLDER.sub(" ", rest)
            elif _ERA_NEWER.search(rest):
                intent.era = "newer"
                rest = _ERA_NEWER.sub(" ", rest)
        return rest

    def _positions(self, rest: str, intent: TurnIntent) -> str:
        """Places in the last list: "more like the second one", "not the first", "not that one".
        In "not the first and the third" the second part inherits the first's polarity; in
        "not the first and more like the third" it has its own."""
        for clause in _CLAUSE.split(rest):
            negative: bool | None = None
            for part in re.split(r"\band\b|\bthen\b|\balso\b", clause):
                positions = []
                for match in _POSITION.finditer(part):
                    first, second, *numbers = match.groups()
                    word = first or second
                    number = next((int(n) for n in numbers if n), None)
                    positions.append(ORDINALS[word] if word else number)
                if _REJECT_WORDS.search(part):
                    negative = True
                elif _POSITIVE.search(part):
                    negative = False
                that = bool(_THAT_ONE.search(_POSITION.sub(" ", part)))
                if positions:
                    (intent.reject if negative else intent.more_like).extend(p for p in positions if p is not None)
                elif that and negative is False and re.search(r"\b(?:more|similar|like)\b", part):
                    intent.more_like_that = True
                elif that and negative:
                    intent.reject_that = True
                else:
                    continue
                rest = rest.replace(part, " ")
        return rest


# --- reasons ---------------------------------------------------------------------------------

HIDDEN = {"exclude_ids", "history", "user_id", "k", "items", "query"}


def _constraint_text(constraints: dict[str, Any]) -> str:
    parts = []
    if constraints.get("genres"):
        parts.append(" or ".join(constraints["genres"]))
    if constraints.get("exclude_genres"):
        parts.append("no " + ", no ".join(constraints["exclude_genres"]))
    low, high = constraints.get("year_from"), constraints.get("year_to")
    if low is not None and high is not None:
        parts.append(f"{low}-{high}")
    elif low is not None:
        parts.append(f"from {low}")
    elif high is not None:
        parts.append(f"up to {high}")
    return "; ".join(parts)


def grounded_reason(provenance: list[Provenance], title: Callable[[str], str]) -> tuple[str, str]:
    """(reason, tool): why an item is on the list, citing the tool call that found it. An explicit
    ask (similar items, a text query) is cited before the backbone's own ranking."""
    found = [p for p in provenance if p.tool != "rank"] or provenance
    order = {"similar_items": 0, "semantic_search": 1, "retrieve": 2}
    # the most specific find first: a similarity or text search, then a retrieve under more constraints
    chosen = min(found, key=lambda p: (
        order.get(p.tool, 3) - (p.tool == "retrieve" and bool(p.constraints.get("query"))) * 2,
        -len([k for k, v in p.constraints.items() if k not in HIDDEN and v not in (None, [], {})]),
        found.index(p),
    ))  # fmt: skip
    c = chosen.constraints
    if chosen.tool == "similar_items":
        seeds = ", ".join(title(i) for i in c.get("items", [])[:3])
        how = "similar content" if chosen.variant == "text" else "liked by the same people"
        text = f"more like {seeds} ({how})"
    elif chosen.tool == "semantic_search":
        text = f'matches "{c.get("query", "")}"'
    elif c.get("query"):
        text = f'matches "{c["query"]}" and your history'
    else:
        text = f"the {chosen.variant or 'sequence'} model's pick for your history"
    detail = _constraint_text(c)
    return f"{text}{f' [{detail}]' if detail else ''} - via {chosen.tool}", chosen.tool


# --- the conversation ------------------------------------------------------------------------


class _TurnState(TypedDict, total=False):
    session: dict[str, Any]
    message: str
    user_id: str | None
    before: dict[str, Any]
    intent: dict[str, Any]
    parsed_by: str
    notes: list[str]
    result: dict[str, Any]


INTENT_PROMPT = """You read one message from a person choosing {things} and reply with ONE JSON object, nothing else.
Fields (leave out what the message does not say):
  "genres": genres wanted, "exclude_genres": genres not wanted, "allow_genres": genres allowed again,
  "year_from", "year_to": release years, "era": "older" or "newer",
  "more_like": positions in the list below to find more like, "reject": positions not wanted,
  "liked_titles": titles the person says they like, "query": any other wish in a few words,
  "reset": true to start over.
Valid genres: {genres}
List shown last:
{shown}
Message: {message}"""


class Conversation:
    """Turns over an agent, persisted per session id with a LangGraph SQLite checkpointer."""

    def __init__(
        self,
        agent_factory: AgentFactory,
        toolbox: Toolbox | None = None,
        *,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        config: ConversationConfig | None = None,
    ) -> None:
        self.agent_factory = agent_factory
        self.toolbox = toolbox if toolbox is not None else agent_factory().nodes.toolbox
        self.config = config or ConversationConfig()
        self.rules = RuleReader(self.toolbox, self.config.title_match)
        self.checkpointer = checkpointer if checkpointer is not None else SqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
        self.graph = self._build()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._agents: dict[str, Agent] = {}
        self._recommendations: OrderedDict[str, Recommendation | None] = OrderedDict()
        self._connection: sqlite3.Connection | None = None

    @classmethod
    def open(
        cls,
        agent_factory: AgentFactory,
        db: Path | str | None = None,
        toolbox: Toolbox | None = None,
        config: ConversationConfig | None = None,
    ) -> Conversation:
        """Sessions in the SQLite file `db` (created with its folder), or in memory when None."""
        if db is not None and str(db) != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(db) if db is not None else ":memory:", check_same_thread=False)
        conversation = cls(agent_factory, toolbox, checkpointer=SqliteSaver(connection), config=config)
        conversation._connection = connection
        return conversation

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- public API ------------------------------------------------------------------------

    def state(self, session_id: str) -> ConversationState | None:
        snapshot = self.graph.get_state(self._thread(session_id))
        session = snapshot.values.get("session") if snapshot and snapshot.values else None
        return ConversationState.model_validate(session) if session else None

    def reset(self, session_id: str) -> None:
        with self._lock(session_id):
            self.checkpointer.delete_thread(session_id)

    def prime(self, session_id: str, messages: list[str], user_id: str | None = None) -> ConversationState:
        """Apply earlier messages' constraints (rules only, no recommendation): a client that
        keeps no session sends the whole exchange each time, and what it asked for still counts."""
        with self._lock(session_id):
            session = self.state(session_id) or ConversationState(session_id=session_id)
            if user_id is not None and session.user_id is None and not session.turns:
                session.user_id = user_id
            for message in messages:
                message = _clean(message or "")[: self.config.max_message_chars]
                if message:
                    self.apply(session, self.rules.read(message, cold=session.user_id is None and not session.liked))
            self.graph.update_state(self._thread(session_id), {"session": session.model_dump(mode="json")}, as_node="respond")
            return session

    def last_recommendation(self, session_id: str) -> Recommendation | None:
        """The full Recommendation (with its trace) of the session's last turn in this process."""
        return self._recommendations.get(session_id)

    def turn(self, session_id: str, message: str, user_id: str | None = None) -> TurnResult:
        """One exchange. `user_id` binds a new session to a known user (a cold start without);
        a session keeps the user it started with."""
        message = _clean(message or "")
        if not message:
            raise ConversationError("the message is empty: say what you would like, or name a few titles you like")
        if len(message) > self.config.max_message_chars:
            raise ConversationError(f"the message is too long ({len(message)} characters; at most {self.config.max_message_chars})")
        if not session_id or len(session_id) > 200:
            raise ConversationError("a session id of 1 to 200 characters is needed")
        with self._lock(session_id):
            current = self.state(session_id)
            if user_id is not None:
                if user_id not in self.toolbox.dataset.user_index:
                    raise UnknownUser(f"unknown user {user_id!r}")
                if current is not None and current.user_id != user_id and (current.user_id is not None or current.turns):
                    raise SessionConflict(f"session {session_id!r} belongs to {'user ' + repr(current.user_id) if current.user_id else 'a new user'}; start another session")
            self._agents[session_id] = self.agent_factory()
            try:
                values = self.graph.invoke({"message": message, "user_id": user_id}, self._thread(session_id))
            finally:
                self._agents.pop(session_id, None)
            return TurnResult.model_validate(values["result"])

    # --- the graph -------------------------------------------------------------------------

    def _thread(self, session_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": session_id}}

    def _lock(self, session_id: str) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 10_000:  # forget the locks nobody holds
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(session_id, threading.Lock())

    def _keep(self, session_id: str, recommendation: Recommendation | None) -> None:
        with self._locks_guard:
            self._recommendations[session_id] = recommendation
            self._recommendations.move_to_end(session_id)
            while len(self._recommendations) > KEPT_RECOMMENDATIONS:
                self._recommendations.popitem(last=False)

    def _build(self) -> CompiledStateGraph:
        graph = StateGraph(_TurnState)
        graph.add_node("interpret", self._interpret)
        graph.add_node("respond", self._respond)
        graph.add_edge(START, "interpret")
        graph.add_edge("interpret", "respond")
        graph.add_edge("respond", END)
        return graph.compile(checkpointer=self.checkpointer)

    def _interpret(self, state: _TurnState, config: RunnableConfig) -> dict[str, Any]:
        session_id = config["configurable"]["thread_id"]
        session = ConversationState.model_validate(state["session"]) if state.get("session") else ConversationState(session_id=session_id)
        if session.user_id is None and not session.turns and state.get("user_id"):
            session.user_id = state["user_id"]
        before = session.model_dump(mode="json")
        intent, parsed_by = self.read(state["message"], session, self._agents.get(session_id))
        notes = self.apply(session, intent)
        return {
            "session": session.model_dump(mode="json"),
            "before": before,
            "intent": intent.model_dump(mode="json"),
            "parsed_by": parsed_by,
            "notes": notes,
        }

    def _respond(self, state: _TurnState, config: RunnableConfig) -> dict[str, Any]:
        session_id = config["configurable"]["thread_id"]
        session = ConversationState.model_validate(state["session"])
        intent = TurnIntent.model_validate(state["intent"])
        notes = list(state.get("notes", []))
        turn = Turn(message=state["message"], intent=intent, parsed_by=state.get("parsed_by", "rules"), notes=notes)
        agent = self._agents.get(session_id) or self.agent_factory()
        self._keep(session_id, None)
        if session.user_id is None and not session.liked:
            turn.reply = "Tell me a few titles you like (for example: I like Toy Story, Heat and Alien) and I will recommend at once."
            if intent.liked_titles or intent.similar_titles or intent.query:
                turn.reply = "I could not find titles I know in that. " + turn.reply
            turn.error = "no history yet"
        else:
            request = self.request(session, intent, state["message"])
            try:
                recommendation = agent.recommend(request)
            except RecommendError as exc:
                # the new constraints leave nothing: keep the earlier ones
                restored = ConversationState.model_validate(state["before"])
                session.constraints = restored.constraints
                turn.error = str(exc)
                turn.reply = f"Nothing matches that ({exc}). I kept your earlier preferences: {session.constraints.describe(self.title) or 'none'}."
            else:
                self._keep(session_id, recommendation)
                turn.items = [self.shown(item) for item in recommendation.items]
                turn.tools = [self._call_text(e.tool or "", e.arguments or {}) for e in recommendation.trace if e.kind == "tool" and e.tool not in ("user_profile", "rank")]
                turn.reply = self.format(session, turn)
                session.shown = list(dict.fromkeys([*session.shown, *(i.id for i in turn.items)]))
                session.last = turn.items
                if not turn.items:
                    turn.error = "no items left to show"
        session.turns = [*session.turns, turn][-KEPT_TURNS:]
        session.turn_count += 1
        result = TurnResult(
            session_id=session_id, reply=turn.reply, items=turn.items, constraints=session.constraints,
            notes=notes, parsed_by=turn.parsed_by, error=turn.error, turn=session.turn_count,
        )  # fmt: skip
        return {"session": session.model_dump(mode="json"), "result": result.model_dump(mode="json")}

    # --- reading a message -----------------------------------------------------------------

    def read(self, message: str, session: ConversationState, agent: Agent | None) -> tuple[TurnIntent, str]:
        """The message's intent: rules, the LLM's reading, or rules with the LLM filling what
        they left empty (a field the rules read is never overridden)."""
        cold = session.user_id is None and not session.liked
        rules = self.rules.read(message, cold=cold)
        if cold and rules.similar_titles and not rules.liked_titles:
            rules.liked_titles = list(rules.similar_titles)  # "something like Alien" is a start too
        mode = self.config.intent
        llm = agent.nodes.llm if agent is not None else None
        if mode == "auto":
            mode = "both" if llm is not None and uses_llm(llm) else "rules"
        if mode == "rules" or llm is None or not uses_llm(llm):
            return rules, "rules"
        prompt = INTENT_PROMPT.format(
            things="movies" if agent is not None and agent.nodes.domain == "movies" else "items",
            genres=", ".join(self.rules.genres) or "(none)",
            shown="\n".join(f"{n}. {i.title}" for n, i in enumerate(session.last, start=1)) or "(nothing yet)",
            message=message,
        )
        try:
            asked = ask_structured(llm, [ChatMessage(role="user", content=prompt)], TurnIntent, retries=0, max_tokens=self.config.intent_max_tokens, temperature=0.0)
        except LLMError:
            asked = None
        read = self._sanitise(asked.value, session) if asked is not None and asked.value is not None else None
        if read is None:
            return rules, "rules"
        if mode == "llm":
            return read, "llm"
        merged = rules.model_copy()
        for name in TurnIntent.model_fields:
            if getattr(rules, name) in (None, False, []) and getattr(read, name) not in (None, False, []):
                setattr(merged, name, getattr(read, name))
        used_llm = merged != rules
        return merged, "rules+llm" if used_llm else "rules"

    def _sanitise(self, intent: TurnIntent, session: ConversationState) -> TurnIntent:
        """The LLM's reading held to what the catalogue and the session allow: known genre values
        only, positions within the last list, years within the catalogue, titles the lookup finds."""

        def genres(values: list[str]) -> list[str]:
            out = []
            for value in values:
                canonical = self.rules.genre_keys.get(normalize(value))
                if canonical:
                    out.append(canonical)
            return list(dict.fromkeys(out))

        span = self.toolbox.year_span or (0, 9999)

        def year(value: int | None) -> int | None:
            return value if value is not None and span[0] - 50 <= value <= span[1] + 50 else None

        positions = range(1, len(session.last) + 1)
        return intent.model_copy(update={
            "genres": genres(intent.genres),
            "exclude_genres": genres(intent.exclude_genres),
            "allow_genres": genres(intent.allow_genres),
            "year_from": year(intent.year_from),
            "year_to": year(intent.year_to),
            "more_like": [p for p in intent.more_like if p in positions],
            "reject": [p for p in intent.reject if p in positions],
            "liked_titles": [t for t in intent.liked_titles if isinstance(t, str) and self.rules.title(t)][:10],
            "similar_titles": [t for t in intent.similar_titles if isinstance(t, str) and self.rules.title(t)][:10],
            "query": intent.query.strip()[:200] if intent.query and intent.query.strip() else None,
        })  # fmt: skip

    # --- applying it -----------------------------------------------------------------------

    def apply(self, session: ConversationState, intent: TurnIntent) -> list[str]:
        """Update the session's constraints in place; returns what changed, in words."""
        c = session.constraints
        notes: list[str] = []
        if intent.reset:
            session.constraints = c = SessionConstraints()
            session.focus = None
            notes.append("started over")
        if intent.any_genre:
            c.genres, c.exclude_genres = [], []
            notes.append("any genre")
        for genre in intent.allow_genres:
            if genre in c.exclude_genres:
                c.exclude_genres.remove(genre)
                notes.append(f"{genre} allowed again")
        for genre in intent.exclude_genres:
            if genre in c.genres:
                c.genres.remove(genre)
            if genre not in c.exclude_genres:
                c.exclude_genres.append(genre)
                notes.append(f"no {genre}")
        wanted = [g for g in intent.genres if g not in intent.exclude_genres]
        if wanted:
            c.genres = list(dict.fromkeys(wanted))
            c.exclude_genres = [g for g in c.exclude_genres if g not in wanted]
            notes.append(" or ".join(wanted))
        if intent.any_year:
            c.year_from = c.year_to = None
            notes.append("any year")
        if intent.year_from is not None or intent.year_to is not None:
            c.year_from, c.year_to = intent.year_from, intent.year_to
            notes.append(f"years {c.year_from or '...'}-{c.year_to or '...'}")
        if intent.era is not None:
            years = [i.year for i in session.last if i.year is not None]
            middle = int(statistics.median(years)) if years else (int(statistics.median(self.toolbox.years[self.toolbox.years > 0])) if (self.toolbox.years > 0).any() else None)
            if middle is not None:
                if intent.era == "older":
                    c.year_to = middle - 1
                    if c.year_from is not None and c.year_from > c.year_to:
                        c.year_from = None
                    notes.append(f"older: up to {c.year_to}")
                else:
                    c.year_from = middle + 1
                    if c.year_to is not None and c.year_to < c.year_from:
                        c.year_to = None
                    notes.append(f"newer: from {c.year_from}")

        def at(position: int) -> ShownItem | None:
            index = len(session.last) + position if position < 0 else position - 1
            return session.last[index] if 0 <= index < len(session.last) else None

        liked = list(dict.fromkeys(found for found in (self.rules.title(t) for t in intent.liked_titles) if found))
        if liked:
            session.liked += [i for i in liked if i not in session.liked]
            notes.append("you like " + ", ".join(self.title(i) for i in liked))
        similar = list(dict.fromkeys(found for found in (self.rules.title(t) for t in intent.similar_titles) if found))
        if similar:
            c.like = similar
            notes.append("more like " + ", ".join(self.title(i) for i in similar))
        like_items = [item for item in (at(p) for p in intent.more_like) if item is not None]
        if intent.more_like_that and not like_items:
            focus = next((i for i in session.last if i.id == session.focus), session.last[0] if session.last else None)
            like_items = [focus] if focus else []
        if like_items:
            c.like = [i.id for i in like_items]
            session.focus = like_items[-1].id
            notes.append("more like " + ", ".join(self.title(i.id) for i in like_items))
        rejected = [item for item in (at(p) for p in intent.reject) if item is not None]
        if intent.reject_that and not rejected:
            focus = next((i for i in session.last if i.id == session.focus), session.last[0] if session.last else None)
            rejected = [focus] if focus else []
        for item in rejected:
            if item.id not in session.rejected:
                session.rejected.append(item.id)
            if item.id in c.like:
                c.like.remove(item.id)
            notes.append(f"not {self.title(item.id)}")
        if rejected:
            session.focus = None
        if intent.query:
            c.query = intent.query
            notes.append(f'"{intent.query}"')
        return notes

    def request(self, session: ConversationState, intent: TurnIntent, message: str) -> RecommendRequest:
        """The agent's request: who (the known user, with anything they named as liked appended,
        or just the liked titles), the hard constraints, what not to show, and the person's
        explicit asks as planned calls."""
        c = session.constraints
        exclude = list(dict.fromkeys(session.rejected if intent.repeat else [*session.shown, *session.rejected]))
        probes = []
        if c.like:
            probes.append(PlannedCall(name="similar_items", arguments={"items": c.like, "space": self.config.similar_space}))
        if c.query:
            probes.append(PlannedCall(name="retrieve", arguments={"query": c.query}))
        wish = c.describe(self.title)
        text = message + (f" (so far: {wish})" if wish else "")
        subject: dict[str, Any]
        if session.user_id is not None and not session.liked:
            subject = {"user_id": session.user_id}
        else:
            base = []
            if session.user_id is not None:
                base = [self.toolbox.dataset.item(int(d)).id for d in self.toolbox.user_history(session.user_id)]
            subject = {"history": list(dict.fromkeys([*[i for i in base if i not in session.liked], *session.liked]))}
        return RecommendRequest(**subject, request=text[:1000], exclude=exclude, constraints=c.filters(), probes=probes)

    # --- output ----------------------------------------------------------------------------

    def title(self, item_id: str) -> str:
        """A title as people say it: "Il Postino (1994)"."""
        try:
            item = self.toolbox.dataset.item(self.toolbox.resolve_item(item_id, "id"))
        except UnknownValue:
            return item_id
        name = natural_title(item.title)
        return name if item.year is None or str(item.year) in name else f"{name} ({item.year})"

    def shown(self, item: RecommendedItem) -> ShownItem:
        reason, tool = grounded_reason(item.provenance, self.title)
        primary = self.toolbox.primary_attribute or ""
        return ShownItem(id=item.id, title=natural_title(item.title), year=item.year, genres=item.attributes.get(primary, []), reason=reason, tool=tool)

    @staticmethod
    def _call_text(tool: str, arguments: dict[str, Any]) -> str:
        shown = {k: v for k, v in arguments.items() if k not in ("user_id", "history", "exclude_ids")}
        return f"{tool}({', '.join(f'{k}={v}' for k, v in shown.items())})"

    def format(self, session: ConversationState, turn: Turn) -> str:
        if not turn.items:
            return "I have nothing new to show under these preferences; try loosening one (\"any genre\", \"any year\") or say \"start over\"."
        wish = session.constraints.describe(self.title)
        head = f"Here is what I found ({wish}):" if wish else "Here is what I found:"
        lines = [head]
        for n, item in enumerate(turn.items, start=1):
            year = f" ({item.year})" if item.year and str(item.year) not in item.title else ""
            genres = f" - {', '.join(item.genres)}" if item.genres else ""
            lines.append(f"{n}. {item.title}{year}{genres}: {item.reason}")
        return "\n".join(lines)


__all__ = [
    "Conversation", "ConversationConfig", "ConversationError", "ConversationState", "RuleReader",
    "SessionConflict", "SessionConstraints", "ShownItem", "Turn", "TurnIntent", "TurnResult", "UnknownUser",
    "grounded_reason",
]
