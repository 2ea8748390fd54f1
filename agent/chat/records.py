"""The conversation's records: what a person asked for so far, what one message asks for, what
was shown, and the errors a turn can end in. They are what the session store keeps per session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from agent.chat.vocabulary import UnreadKind
from agent.pool import constraint_text
from agent.request import MenuChoice
from tools.constraints import Filters

__all__ = [
    "ConversationConfig",
    "ConversationError",
    "ConversationState",
    "Knowledge",
    "MessageReading",
    "NamedTitles",
    "RuleReading",
    "SessionConflict",
    "SessionConstraints",
    "ShownItem",
    "Turn",
    "TurnIntent",
    "TurnResult",
    "UnknownUser",
]

MAX_MESSAGE_CHARS = 4000
KEPT_TURNS = 100  # the turn log kept per session (constraints, shown and rejected are kept whole)
KEPT_RECOMMENDATIONS = 256  # sessions whose last full Recommendation is kept in memory
TITLE_MATCH = 85.0
KnowledgeMode = Literal["auto", "on", "off"]  # lookup similarity (0-100) from which a named title counts as found

# --- records ---------------------------------------------------------------------------------


class SessionConstraints(BaseModel):
    """What the person has asked for so far; every retrieval tool call is held to it."""

    genres: list[str] = Field(default_factory=list, description="Wanted: items with at least one of these")
    exclude_genres: list[str] = Field(default_factory=list)
    year_from: int | None = None
    year_to: int | None = None
    query: str | None = Field(None, description="The standing free-text wish")
    like: list[str] = Field(default_factory=list, description="Item ids to find more like")
    prefer_genres: list[str] = Field(default_factory=list, description="Preferred (a mood, an audience): items with them lead")
    named: list[str] = Field(default_factory=list, description="Item ids an LLM named for the wish, found in the catalogue: they lead")
    quality: bool = Field(False, description="The best-rated lead (the catalogue's own ratings)")

    def filters(self) -> Filters | None:
        if not (self.genres or self.exclude_genres or self.year_from is not None or self.year_to is not None):
            return None
        return Filters(
            genres=self.genres or None,
            exclude_genres=self.exclude_genres or None,
            year_from=self.year_from,
            year_to=self.year_to,
        )

    def describe(self, title: Callable[[str], str] | None = None) -> str:
        narrowing = constraint_text(self.model_dump(include={"genres", "exclude_genres", "year_from", "year_to"}))
        parts = [narrowing] if narrowing else []
        if self.prefer_genres:
            parts.append("preferably " + " or ".join(self.prefer_genres))
        if self.quality:
            parts.append("the best-rated first")
        if self.query:
            parts.append(f'"{self.query}"')
        if self.like:
            parts.append("more like " + ", ".join(title(i) if title else i for i in self.like))
        return "; ".join(parts)


class Knowledge(BaseModel):
    """What an LLM named for a wish the catalogue cannot read (a cast, a plot) and what of it held:
    each title looked up in the catalogue and kept only if it is there and fits the rest of the wish."""

    asked: str = Field(description="The wish's unreadable words the LLM was asked about")
    named: list[str] = Field(default_factory=list, description="The titles it named, as it wrote them")
    kept: list[str] = Field(default_factory=list, description="Item ids found for them that fit the wish")
    dropped: list[str] = Field(default_factory=list, description="Why each other title was left out")
    error: str | None = None


class NamedTitles(BaseModel):
    """The LLM's reply when asked to name titles for a wish."""

    titles: list[str] = Field(default_factory=list, max_length=12)


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
    prefer_genres: list[str] = Field(default_factory=list, description="Genres preferred (a mood, an audience): they lead, not filter")
    quality: bool = Field(False, description='"the best": order by the catalogue\'s own ratings')
    unread: list[UnreadKind] = Field(default_factory=list, description="What the catalogue cannot express (a cast, a plot, ...)")
    unread_words: list[str] = Field(default_factory=list, description="The words of those parts, as said")
    seen_titles: list[str] = Field(default_factory=list, description='Titles the person has seen ("I already saw X"): not shown')
    liked_titles: list[str] = Field(default_factory=list, description="Titles the person likes (added to their history)")
    similar_titles: list[str] = Field(default_factory=list, description='Titles to find more like ("more like Alien")')
    query: str | None = Field(None, description="Free-text wish not covered by the other fields")
    repeat: bool = Field(False, description="Items already shown may come again")
    reset: bool = Field(False, description="Start the constraints over")

    @field_validator("genres", "exclude_genres", "allow_genres", "prefer_genres", "liked_titles", "similar_titles", mode="before")
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


class RuleReading(BaseModel):
    """What the rules made of a message: the intent, the content words no rule read (none: the
    rules suffice, no LLM call), and the sentences set aside as instructions to the system."""

    intent: TurnIntent
    kept: str = Field("", description="The message without the sentences set aside")
    unread: list[str] = Field(default_factory=list)
    set_aside: list[str] = Field(default_factory=list)


class MessageReading(BaseModel):
    """The LLM's reading of a message, as its JSON-schema-constrained reply gives it (the schema
    holds genres to the catalogue's values); checked against the catalogue before use. Years and
    places in the list shown are left to the rules, which read them reliably."""

    query: str | None = Field(None, description="What the person wants that genres cannot say, in a few words")
    genres: list[str] = Field(default_factory=list)
    exclude_genres: list[str] = Field(default_factory=list)
    like: list[str] = Field(default_factory=list, description="Titles named as what to find more like")

    @field_validator("genres", "exclude_genres", "like", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value


class Turn(BaseModel):
    message: str
    intent: TurnIntent
    parsed_by: str
    notes: list[str] = Field(default_factory=list)
    set_aside: list[str] = Field(default_factory=list, description="Sentences read as instructions to the system: left out")
    items: list[ShownItem] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list, description="The tool calls the agent made")
    reply: str = ""
    said: list[str] = Field(default_factory=list, description="The reply's words around its list (understood, not usable, an invitation)")
    knowledge: Knowledge | None = None
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

    def belongs_to_other(self, user_id: str | None) -> bool:
        """Whether binding this session to `user_id` conflicts with whom it already serves: a
        session keeps the user it started with (a cold start that has turns is someone too)."""
        return user_id is not None and self.user_id != user_id and (self.user_id is not None or bool(self.turns))


class TurnResult(BaseModel):
    session_id: str
    reply: str
    items: list[ShownItem]
    constraints: SessionConstraints
    notes: list[str] = Field(default_factory=list)
    said: list[str] = Field(default_factory=list, description="The reply's words around its list, for a client that shows the list itself")
    knowledge: Knowledge | None = Field(None, description="What an LLM named for the wish and what of it the catalogue has")
    unread: list[UnreadKind] = Field(
        default_factory=list, description="Parts of the message the catalogue cannot express, named in the reply"
    )
    parsed_by: str
    error: str | None = None
    turn: int


class ConversationConfig(BaseModel):
    intent: Literal["auto", "rules", "llm", "both"] = Field(
        "auto",
        description="How messages are read: rules; the LLM; both (the LLM fills what the rules left empty); auto: the rules, and the "
        "LLM as well where they left words unread and there is an LLM",
    )
    intent_max_tokens: int = Field(64, description="The LLM's reading: a short JSON object")
    intent_timeout_s: float = Field(15.0, description="The LLM's reading; past it the rules' reading stands")
    # the LLM's menu weighing added nothing measurable on ML-1M (docs/planners.md), so a turn's
    # one LLM call is the message reading
    menu_choice: MenuChoice | None = Field(
        "prior",
        description="How the agent weighs its intent menu in a turn: prior (the learned prior, no LLM call; uniform without one), "
        "uniform, llm (a second LLM call a turn); None: as the agent is configured",
    )
    knowledge: KnowledgeMode = Field(
        "auto",
        description="Ask the LLM to name titles for what the catalogue cannot read (a cast, a plot), each looked up and kept only "
        "if it fits the wish: on, off, or auto (on where it was measured to help or is expected to: the embedded 1.5B and "
        "OpenAI-compatible backends; off for the embedded 0.5B)",
    )
    knowledge_max_tokens: int = Field(128, description="The LLM's list of titles")
    similar_space: str = Field(
        "blend", description='Space for "more like": blend (content, genres and audience), model (watched by the same people) or text'
    )
    title_match: float = TITLE_MATCH
    max_message_chars: int = MAX_MESSAGE_CHARS


class ConversationError(ValueError):
    """A turn that cannot be taken (unknown user, a session bound to another user, an empty
    message); the message says why."""


class SessionConflict(ConversationError):
    pass


class UnknownUser(ConversationError):
    pass
