"""What one message changes in a conversation: its reading (the rules first, then the LLM's
JSON reading for what the rules left empty, held to the catalogue), its application to the
session's constraints, and the agent request that follows from them."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np

from agent.chat.records import (
    ConversationConfig,
    ConversationState,
    Knowledge,
    KnowledgeMode,
    MessageReading,
    NamedTitles,
    RuleReading,
    SessionConstraints,
    ShownItem,
    TurnIntent,
)
from agent.chat.rules import RuleReader
from agent.llm.base import LLM, ChatMessage, LLMError, uses_llm
from agent.llm.fetch import EMBEDDED_MODELS
from agent.llm.parsing import ask_structured
from agent.prompts import intent_examples, render
from agent.recommend import Agent
from agent.request import PlannedCall, RecommendRequest
from tools.constraints import Filters, to_mask
from tools.schemas import NoMatch
from tools.toolbox import Toolbox, normalize

# The embedded models whose named titles were measured to help (their GGUF file names' stems).
KNOWING_EMBEDDED = {Path(EMBEDDED_MODELS["1.5b"].filename).stem}
# A list follows a wish when 4 of its 5 items meet it (eval/bench/wishes.toml): where a wish only
# orders (a mood, an audience) and admits most of the catalogue, the person's own picks keep one
# place in five, so a wrong guess at a vague word cannot push out all they would have had.
OWN_SHARE = 0.2
MOST_OF_THE_CATALOGUE = 0.5
# The LLM's reply when asked to name titles: a short list, held by the backend where it can.
TITLES_SCHEMA = {
    "type": "object",
    "properties": {"titles": {"type": "array", "items": {"type": "string", "maxLength": 100}, "maxItems": 8}},
    "required": ["titles"],
    "additionalProperties": False,
}


def asks_for_titles(mode: KnowledgeMode, llm: LLM) -> bool:
    """Whether to ask this LLM to name titles (`ConversationConfig.knowledge`): auto asks an
    OpenAI-compatible backend and the embedded 1.5B, whose titles raised the held-out knowledge
    precision of the wish benchmark from 0.01 to 0.12; not the 0.5B, whose titles left it at
    0.01 (docs/wishes.md)."""
    backend, _, model = llm.name.partition(":")
    return uses_llm(llm) and (mode == "on" or (mode == "auto" and (backend == "openai" or model in KNOWING_EMBEDDED)))


class Steering:
    """Reads messages and applies them, for one catalogue."""

    def __init__(self, toolbox: Toolbox, rules: RuleReader, config: ConversationConfig) -> None:
        self.toolbox, self.rules, self.config = toolbox, rules, config
        self.wanted_genres = [g for g in rules.genres if normalize(g) != "unknown"]
        self._preamble: dict[str, list[ChatMessage]] = {}

    def title(self, item_id: str) -> str:
        return self.toolbox.spoken_title(item_id)

    def read(self, message: str, session: ConversationState, agent: Agent | None) -> tuple[TurnIntent, str, RuleReading]:
        """The message's intent and who read it ("rules", "llm", "rules+llm"), with the rules'
        own reading. The rules read first; the LLM reads as well where they left words unread
        (mode auto), always (both) or alone (llm), and fills only what the rules left empty. The
        sentences the rules set aside as instructions reach neither."""
        cold = session.user_id is None and not session.liked
        reading = self.rules.reading(message, cold=cold)
        rules = reading.intent
        llm = agent.llm if agent is not None else None
        mode = self.config.intent
        ask = mode in ("llm", "both") or (mode == "auto" and bool(reading.unread))
        read = self._llm_reading(reading, agent) if ask and agent is not None and uses_llm(llm) else None
        if read is None:
            intent, parsed_by = rules, "rules"
        elif mode == "llm":
            intent, parsed_by = read, "llm"
        else:
            intent = rules.model_copy()
            for name in TurnIntent.model_fields:
                if name != "query" and getattr(rules, name) in (None, False, []) and getattr(read, name) not in (None, False, []):
                    setattr(intent, name, getattr(read, name))
            # the model never contradicts what the rules read in the person's own words: "a
            # comedy under 90 minutes" read by a model as "no Comedy" keeps the comedy
            intent.exclude_genres = [g for g in intent.exclude_genres if g not in rules.genres and g not in rules.prefer_genres]
            intent.genres = [g for g in intent.genres if g not in rules.exclude_genres]
            # a genre the model infers where the person named none (a mood, a plot) orders the
            # list instead of filtering it: a small model's wrong guess ("weighty" read as
            # Action) then costs the order of one list, not every title of the right genre
            if not rules.genres and intent.genres:
                if not rules.prefer_genres:
                    intent.prefer_genres = intent.genres
                intent.genres = []
            # the rules' query is only the words they could not read, verbatim: the LLM's own
            # wording of the wish replaces it; a genre it found for them leaves them a query
            if read.query and self.rules.describes_items:
                intent.query = read.query
            parsed_by = "rules+llm" if intent != rules else "rules"
        if cold and intent.similar_titles and not intent.liked_titles:
            intent.liked_titles = list(intent.similar_titles)  # "something like Alien" is a start too
        return intent, parsed_by, reading

    def _llm_reading(self, reading: RuleReading, agent: Agent) -> TurnIntent | None:
        """One short JSON-schema-constrained call. The prompt puts what every call shares first
        (the system prompt with the catalogue's genres, the worked examples), the message last,
        so an embedded model evaluates the shared part once. None where the reply is
        unusable or late: the rules' reading stands."""
        text = " ".join(reading.kept.split())
        if not text:
            return None
        prompt = render(agent.planner.domain, "intent", message=text)
        messages = [*self.preamble(agent.planner.domain), ChatMessage(role="user", content=prompt)]
        try:
            asked = ask_structured(
                agent.llm,
                messages,
                MessageReading,
                retries=0,
                max_tokens=self.config.intent_max_tokens,
                temperature=0.0,
                timeout=self.config.intent_timeout_s,
                json_schema=self.schema(),
            )
        except LLMError:
            return None
        if asked.value is None:
            return None
        return self._sanitise(asked.value)

    def preamble(self, domain: str) -> list[ChatMessage]:
        """What every reading call starts with: the system prompt with the catalogue's genres,
        then worked examples as earlier turns (small models follow examples better than rules)."""
        if domain not in self._preamble:
            system = ChatMessage(role="system", content=render(domain, "intent_system", genres=", ".join(self.wanted_genres) or "(none)"))
            turns = []
            for message, reply in intent_examples(domain):
                turns += [
                    ChatMessage(role="user", content=render(domain, "intent", message=message)),
                    ChatMessage(role="assistant", content=reply),
                ]
            self._preamble[domain] = [system, *turns]
        return self._preamble[domain]

    def schema(self) -> dict[str, Any]:
        """The reply's JSON schema: the free-text wish first and always (a small model that
        starts on a list of genres goes on listing), genres only from the catalogue, short lists.
        Years and places in the list are the rules' to read: the 0.5B model invents years."""
        genre = {"type": "string", "enum": self.wanted_genres} if self.wanted_genres else {"type": "string"}
        return {
            "type": "object",
            "properties": {
                "query": {"type": "string", "maxLength": 80},
                "genres": {"type": "array", "items": genre, "maxItems": 2},
                "exclude_genres": {"type": "array", "items": genre, "maxItems": 2},
                "like": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": 3},
            },
            "required": ["query"],
            "additionalProperties": False,
        }

    def _sanitise(self, reading: MessageReading) -> TurnIntent:
        """The LLM's reading held to the catalogue (whatever the backend enforced): known genre
        values only, titles the lookup finds."""

        def genres(values: list[str]) -> list[str]:
            out = []
            for value in values:
                canonical = self.rules.genre_keys.get(normalize(value)) if isinstance(value, str) else None
                if canonical:
                    out.append(canonical)
            return list(dict.fromkeys(out))

        # a query of genre words only says what the genres say
        words = (reading.query or "").split() if isinstance(reading.query, str) else []
        query = " ".join(w for w in words if normalize(w) not in self.rules.genre_keys)[:200] or None
        return TurnIntent(
            genres=genres(reading.genres),
            exclude_genres=genres(reading.exclude_genres),
            similar_titles=[t for t in reading.like if isinstance(t, str) and self.rules.title(t)][:10],
            query=query,
        )

    # --- knowledge from the LLM --------------------------------------------------------------

    def knows(self, llm: LLM) -> bool:
        return asks_for_titles(self.config.knowledge, llm)

    def knowledge(self, intent: TurnIntent, session: ConversationState, agent: Agent) -> Knowledge | None:
        """For a wish about people, plots or themes, the titles the LLM names, each looked up in
        the catalogue (title and year, fuzzy) and kept only if it is there, fits the standing
        constraints and was not rejected. None where it is not asked."""
        wanted = [w for w in intent.unread_words if w] if {"cast", "director", "plot"} & set(intent.unread) else []
        if not wanted or not self.knows(agent.llm):
            return None
        asked = "; ".join(wanted)
        prompt = render(agent.planner.domain, "knowledge", wish=asked)
        try:
            reply = ask_structured(
                agent.llm,
                [ChatMessage(role="user", content=prompt)],
                NamedTitles,
                retries=0,
                max_tokens=self.config.knowledge_max_tokens,
                temperature=0.0,
                timeout=self.config.intent_timeout_s,
                json_schema=TITLES_SCHEMA,
            )
        except LLMError as exc:
            return Knowledge(asked=asked, error=f"{type(exc).__name__}: {exc}")
        if reply.value is None:
            return Knowledge(asked=asked, error="no usable list of titles")
        return self._grounded(asked, [t for t in reply.value.titles if isinstance(t, str)], session)

    def _grounded(self, asked: str, named: list[str], session: ConversationState) -> Knowledge:
        """Each named title looked up, and kept where the tools' own mask admits it: the standing
        constraints, minus what the person saw, liked or rejected."""
        out, index = Knowledge(asked=asked, named=named), self.toolbox.dataset.item_index
        history = self.toolbox.user_history(session.user_id) if session.user_id is not None else np.empty(0, dtype=np.int64)
        seen = np.concatenate([history, np.array([index[i] for i in [*session.rejected, *session.liked] if i in index], dtype=np.int64)])
        try:
            admitted = to_mask(self.toolbox, session.constraints.filters() or Filters(), exclude=seen).mask
        except NoMatch:
            admitted = np.zeros(self.toolbox.num_items + 1, dtype=bool)
        for title in named:
            found = self.rules.title(title)
            if found is None:
                out.dropped.append(f"{title}: not in the catalogue")
            elif found in out.kept or not admitted[index[found]]:
                out.dropped.append(f"{title}: named already, seen, or outside what the wish admits")
            else:
                out.kept.append(found)
        return out

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
        preferred = [g for g in intent.prefer_genres if g not in c.exclude_genres]
        if preferred:
            c.prefer_genres = preferred
            notes.append("preferably " + " or ".join(preferred))
        if intent.quality:
            c.quality = True
            notes.append("the best-rated first")
        if intent.any_year:
            c.year_from = c.year_to = None
            notes.append("any year")
        if intent.year_from is not None or intent.year_to is not None:  # absolute, or the vocabulary's "recent" / "old"
            c.year_from, c.year_to = intent.year_from, intent.year_to
            notes.append(f"years {c.year_from or '...'}-{c.year_to or '...'}")
        if intent.era is not None:
            years = [i.year for i in session.last if i.year is not None]
            middle = (
                int(statistics.median(years))
                if years
                else (int(statistics.median(self.toolbox.years[self.toolbox.years > 0])) if (self.toolbox.years > 0).any() else None)
            )
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

        seen = list(dict.fromkeys(found for found in (self.rules.title(t) for t in intent.seen_titles) if found))
        for item_id in seen:  # "I already saw X": never shown again, and no longer a subject
            if item_id not in session.rejected:
                session.rejected.append(item_id)
            if item_id in c.like:
                c.like.remove(item_id)
            notes.append(f"you saw {self.title(item_id)}")
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
        # a new wish (genres, "like X", words) replaces the standing wishes of the kinds it was
        # not said with: "a 90s thriller" after "like Toy Story" is a new subject, not its refinement
        said_like = bool(similar or like_items)
        if (wanted or said_like or intent.query or preferred or intent.quality) and not intent.reset:
            if c.like and not said_like:
                notes.append("no longer more like " + ", ".join(self.title(i) for i in c.like))
                c.like = []
            if c.query and not intent.query:
                notes.append(f'no longer "{c.query}"')
                c.query = None
            if c.prefer_genres and not preferred:
                c.prefer_genres = []
            if c.quality and not intent.quality:
                c.quality = False
            c.named = []  # a new wish: what an LLM named for the last one no longer leads
        if intent.query:
            c.query = intent.query
            notes.append(f'"{intent.query}"')
        return notes

    def probes(self, c: SessionConstraints) -> list[PlannedCall]:
        """The calls made up front for what the person asked for, whose finds lead the list (the
        person's taste orders within them): more like the titles named, with the preferred
        genres; else the best-rated under the wish ("the best"); else the preferred genres in
        the person's own order; and the words, where the items have text to match."""
        prefer = self.preferred(c)
        probes = [PlannedCall(name="rank", arguments={"candidates": c.named, "by": "popularity"})] if c.named else []
        if c.like:
            probes.append(PlannedCall(name="similar_items", arguments={"items": c.like, "space": self.config.similar_space, **prefer}))
        elif c.quality:
            probes.append(PlannedCall(name="top_items", arguments={"by": "quality", **prefer}))
        elif c.prefer_genres:
            probes.append(PlannedCall(name="retrieve", arguments=prefer))
        if c.query:
            probes.append(PlannedCall(name="semantic_search", arguments={"query": c.query}))
        return probes

    def preferred(self, c: SessionConstraints) -> dict[str, Any]:
        """The preferred genres as a probe's filter on the genre attribute, which the wish's own
        genres narrow further ("a comedy" then "something weightier": Comedy and Drama), where a
        `genres` argument would be replaced by them."""
        primary = self.toolbox.primary_attribute
        return {"attributes": {primary: c.prefer_genres}} if c.prefer_genres and primary else {}

    def cold_probes(self, c: SessionConstraints) -> list[PlannedCall]:
        """With no history yet: more like the titles named, then the catalogue's own best under
        the wish (the preferred genres first), then its best under the hard constraints alone,
        so the list is full."""
        by = "quality" if c.quality else "both"
        prefer = self.preferred(c)
        calls = [PlannedCall(name="rank", arguments={"candidates": c.named, "by": "popularity"})] if c.named else []
        if c.like:
            calls.append(PlannedCall(name="similar_items", arguments={"items": c.like, "space": self.config.similar_space, **prefer}))
        if c.query:
            calls.append(PlannedCall(name="semantic_search", arguments={"query": c.query, **prefer}))
        calls.append(PlannedCall(name="top_items", arguments={"by": by, **prefer}))
        if prefer:
            calls.append(PlannedCall(name="top_items", arguments={"by": by}))
        return calls

    def request(self, session: ConversationState, intent: TurnIntent, message: str) -> RecommendRequest:
        """The agent's request: who (the known user, with anything they named as liked appended,
        or just the liked titles), the hard constraints, what not to show, and the person's
        explicit asks as planned calls."""
        c = session.constraints
        exclude = list(dict.fromkeys(session.rejected if intent.repeat else [*session.shown, *session.rejected]))
        probes = self.probes(c)
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
        return RecommendRequest(
            **subject,
            request=text[:1000],
            exclude=exclude,
            constraints=c.filters(),
            probes=probes,
            own_share=self.own_share(session),
            menu_choice=self.config.menu_choice,
        )

    def own_share(self, session: ConversationState) -> float:
        """OWN_SHARE where a known person's wish only orders (preferred genres, no title, words
        or "the best") and its constraints admit most of the catalogue; else 0."""
        c = session.constraints
        if session.user_id is None or session.liked or not c.prefer_genres or c.like or c.query or c.named or c.quality:
            return 0.0
        filters = c.filters()
        if filters is None:
            return OWN_SHARE
        try:
            admitted = int(np.count_nonzero(to_mask(self.toolbox, filters).mask))
        except NoMatch:
            return 0.0
        return OWN_SHARE if admitted > MOST_OF_THE_CATALOGUE * self.toolbox.num_items else 0.0
