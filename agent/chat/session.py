"""A conversation over the agent: constraints that accumulate across turns, persisted per session.

    conversation = Conversation.open(agent_factory, db="sessions.sqlite")
    conversation.turn("s1", "I like Toy Story and Heat")      # cold start: titles via lookup
    conversation.turn("s1", "no horror, older films")         # constraints accumulate
    conversation.turn("s1", "more like the second one")       # -> similar_items on that item
    conversation.turn("s1", "not that one")                   # rejected, never shown again

One turn is a small LangGraph graph, `interpret -> respond`, compiled with a checkpointer keyed
by the session id (the session store, `agent.chat.store`: SQLite by default, Postgres for several
server processes), so a conversation survives restarts. The turn's
agent reaches the nodes through the run's config. `interpret` turns the message into a
`TurnIntent` (the deterministic rule reading of `agent.chat.rules` first, then the LLM's JSON
reading for what the rules left empty: a 0.5B model's slip cannot break a turn) and applies it
to the `ConversationState`; `respond` runs the agent with the accumulated constraints imposed on
every tool call (`RecommendRequest.constraints`), the person's explicit asks as planned calls
(`RecommendRequest.probes`: "more like X" -> similar_items, free text -> retrieve with a query),
and what was shown or rejected excluded. Every item comes with the agent's reason for it. The
message is data: it can change constraints (validated against the catalogue), never which
tools run, for whom, or which items may be listed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent.chat.cold import cold_recommendation
from agent.chat.records import (
    KEPT_RECOMMENDATIONS,
    KEPT_TURNS,
    ConversationConfig,
    ConversationError,
    ConversationState,
    Knowledge,
    SessionConflict,
    SessionConstraints,
    ShownItem,
    Turn,
    TurnIntent,
    TurnResult,
    UnknownUser,
)
from agent.chat.rules import RuleReader, clean
from agent.chat.steering import Steering
from agent.chat.store import SessionStore, SessionStoreError, is_postgres_url, sqlite_store
from agent.prompts import domain_of, phrase
from agent.recommend import Agent, AgentFactory
from agent.request import RecommendError, shown_arguments
from agent.state import Recommendation, RecommendedItem
from tools.titles import item_line, natural_title
from tools.toolbox import Toolbox


class TurnState(TypedDict, total=False):
    """One turn's graph state; `session` is what the checkpointer keeps per session."""

    session: ConversationState
    message: str
    user_id: str | None
    before: SessionConstraints  # the constraints before this message, restored when it leaves nothing
    intent: TurnIntent
    parsed_by: str
    notes: list[str]
    set_aside: list[str]  # sentences of the message read as instructions to the system: not followed
    knowledge: Knowledge | None  # what an LLM named for the wish, and what of it the catalogue has
    result: TurnResult


def agent_of(config: RunnableConfig) -> Agent:
    """The turn's agent, handed to the graph's nodes through the run's config."""
    return config["configurable"]["agent"]


class Conversation:
    """Turns over an agent, persisted per session id with a LangGraph checkpointer."""

    def __init__(
        self,
        agent_factory: AgentFactory,
        toolbox: Toolbox | None = None,
        *,
        store: SessionStore | None = None,
        config: ConversationConfig | None = None,
    ) -> None:
        self.agent_factory = agent_factory
        self.toolbox = toolbox if toolbox is not None else agent_factory().toolbox
        self.config = config or ConversationConfig()
        self.rules = RuleReader(self.toolbox, self.config.title_match)
        self.domain = domain_of(self.toolbox.dataset.name)
        self.steering = Steering(self.toolbox, self.rules, self.config)
        self.store = store if store is not None else sqlite_store(None)
        self.checkpointer = self.store.checkpointer
        self.graph = self._build()
        self._kept_guard = threading.Lock()
        self._recommendations: OrderedDict[str, Recommendation | None] = OrderedDict()

    @classmethod
    def open(
        cls,
        agent_factory: AgentFactory,
        db: Path | str | None = None,
        toolbox: Toolbox | None = None,
        config: ConversationConfig | None = None,
        *,
        connections: int = 4,
        lock_timeout_s: float = 120.0,
    ) -> Conversation:
        """Sessions in the SQLite file `db` (created with its folder), in memory when None, or in
        Postgres for a `postgresql://` URL (`connections` for turn locks at once, a turn waiting
        at most `lock_timeout_s` for another of its session)."""
        if isinstance(db, str) and is_postgres_url(db):
            try:
                from agent.chat.postgres import postgres_store
            except ImportError as exc:
                raise SessionStoreError(f"sessions in Postgres need the postgres extra: pip install 'toolrec[postgres]' ({exc})") from exc
            store = postgres_store(db, connections=connections, lock_timeout_s=lock_timeout_s)
        else:
            store = sqlite_store(db)
        return cls(agent_factory, toolbox, store=store, config=config)

    def close(self) -> None:
        self.store.close()

    # --- public API ------------------------------------------------------------------------

    def state(self, session_id: str) -> ConversationState | None:
        snapshot = self.graph.get_state(self._thread(session_id))
        return snapshot.values.get("session") if snapshot and snapshot.values else None

    def reset(self, session_id: str) -> None:
        with self.store.locks.hold(session_id):
            self.checkpointer.delete_thread(session_id)

    def update(self, session_id: str, change: Callable[[ConversationState], None]) -> ConversationState:
        """Apply `change` to the session's state (a new session if there is none) and store it,
        under the session's turn lock so that no turn runs meanwhile; `change` may raise to
        leave the session as it was."""
        with self.store.locks.hold(session_id):
            session = self.state(session_id) or ConversationState(session_id=session_id)
            change(session)
            self.graph.update_state(self._thread(session_id), {"session": session}, as_node="respond")
            return session

    def prime(self, session_id: str, messages: list[str], user_id: str | None = None) -> ConversationState:
        """Apply earlier messages' constraints (rules only, no recommendation): a client that
        keeps no session sends the whole exchange each time, and what it asked for still counts."""

        def apply(session: ConversationState) -> None:
            if user_id is not None and session.user_id is None and not session.turns:
                session.user_id = user_id
            for message in messages:
                message = clean(message or "")[: self.config.max_message_chars]
                if message:
                    self.steering.apply(session, self.rules.read(message, cold=session.user_id is None and not session.liked))

        return self.update(session_id, apply)

    def last_recommendation(self, session_id: str) -> Recommendation | None:
        """The full Recommendation (with its trace) of the session's last turn in this process."""
        return self._recommendations.get(session_id)

    def turn(self, session_id: str, message: str, user_id: str | None = None) -> TurnResult:
        """One exchange. `user_id` binds a new session to a known user (a cold start without);
        a session keeps the user it started with."""
        message = clean(message or "")
        if not message:
            raise ConversationError("the message is empty: say what you would like, or name a few titles you like")
        if len(message) > self.config.max_message_chars:
            raise ConversationError(f"the message is too long ({len(message)} characters; at most {self.config.max_message_chars})")
        if not session_id or len(session_id) > 200:
            raise ConversationError("a session id of 1 to 200 characters is needed")
        with self.store.locks.hold(session_id):
            current = self.state(session_id)
            if user_id is not None:
                if user_id not in self.toolbox.dataset.user_index:
                    raise UnknownUser(f"unknown user {user_id!r}")
                if current is not None and current.belongs_to_other(user_id):
                    raise SessionConflict(
                        f"session {session_id!r} belongs to {'user ' + repr(current.user_id) if current.user_id else 'a new user'}; "
                        "start another session"
                    )
            run = self._thread(session_id)
            run["configurable"]["agent"] = self.agent_factory()
            values = self.graph.invoke(TurnState(message=message, user_id=user_id), run)
            return values["result"]

    # --- the graph -------------------------------------------------------------------------

    def _thread(self, session_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": session_id}}

    def _keep(self, session_id: str, recommendation: Recommendation | None) -> None:
        with self._kept_guard:
            self._recommendations[session_id] = recommendation
            self._recommendations.move_to_end(session_id)
            while len(self._recommendations) > KEPT_RECOMMENDATIONS:
                self._recommendations.popitem(last=False)

    def _build(self) -> CompiledStateGraph:
        graph = StateGraph(TurnState)
        graph.add_node("interpret", self._interpret)
        graph.add_node("respond", self._respond)
        graph.add_edge(START, "interpret")
        graph.add_edge("interpret", "respond")
        graph.add_edge("respond", END)
        return graph.compile(checkpointer=self.checkpointer)

    def _interpret(self, state: TurnState, config: RunnableConfig) -> dict[str, Any]:
        session_id = config["configurable"]["thread_id"]
        known = state.get("session")
        session = known.model_copy(deep=True) if known is not None else ConversationState(session_id=session_id)
        if session.user_id is None and not session.turns and state.get("user_id"):
            session.user_id = state["user_id"]
        before = session.constraints.model_copy(deep=True)
        agent = agent_of(config)
        intent, parsed_by, reading = self.steering.read(state["message"], session, agent)
        notes = self.steering.apply(session, intent)
        knowledge = self.steering.knowledge(intent, session, agent)
        if knowledge is not None and knowledge.kept:
            session.constraints.named = knowledge.kept
            notes.append(f'the language model named {len(knowledge.named)} titles for "{knowledge.asked}"; {len(knowledge.kept)} fit')
        return {
            "session": session,
            "before": before,
            "intent": intent,
            "parsed_by": parsed_by,
            "notes": notes,
            "set_aside": reading.set_aside,
            "knowledge": knowledge,
        }

    def _respond(self, state: TurnState, config: RunnableConfig) -> dict[str, Any]:
        session_id = config["configurable"]["thread_id"]
        session = state["session"].model_copy(deep=True)
        intent = state["intent"]
        notes = list(state.get("notes", []))
        turn = Turn(
            message=state["message"],
            intent=intent,
            parsed_by=state.get("parsed_by", "rules"),
            notes=notes,
            set_aside=state.get("set_aside", []),
            knowledge=state.get("knowledge"),
        )
        agent = agent_of(config)
        self._keep(session_id, None)
        cold = session.user_id is None and not session.liked
        request = self.steering.request(session, intent, state["message"])
        try:
            if cold:  # no history yet: an answer at once, from the catalogue's own best under the wish
                recommendation = cold_recommendation(self.toolbox, request, self.steering.cold_probes(session.constraints), agent.config.k)
            else:
                recommendation = agent.recommend(request)
        except RecommendError as exc:
            # the new constraints leave nothing: keep the earlier ones
            session.constraints = state["before"]
            turn.error = str(exc)
            turn.reply = (
                f"Nothing matches that ({exc}). I kept your earlier preferences: {session.constraints.describe(self.title) or 'none'}."
            )
        else:
            self._keep(session_id, recommendation)
            turn.items = [self.shown(item) for item in recommendation.items]
            turn.tools = [
                call_text(e.tool or "", e.arguments or {})
                for e in recommendation.trace
                if e.kind == "tool" and e.tool not in ("user_profile", "rank")
            ]
            before = self.said(turn)
            turn.reply = self.format(session, turn, before, cold)
            turn.said = [*before, *([self.say("cold")] if cold else [])]
            session.shown = list(dict.fromkeys([*session.shown, *(i.id for i in turn.items)]))
            session.last = turn.items
            if not turn.items:
                turn.error = "no items left to show"
        session.turns = [*session.turns, turn][-KEPT_TURNS:]
        session.turn_count += 1
        result = TurnResult(
            session_id=session_id,
            reply=turn.reply,
            items=turn.items,
            constraints=session.constraints,
            notes=notes,
            said=turn.said,
            knowledge=turn.knowledge,
            unread=intent.unread,
            parsed_by=turn.parsed_by,
            error=turn.error,
            turn=session.turn_count,
        )
        return {"session": session, "result": result}

    # --- output ----------------------------------------------------------------------------

    def title(self, item_id: str) -> str:
        """A title as people say it: "Il Postino (1994)"."""
        return self.toolbox.spoken_title(item_id)

    def shown(self, item: RecommendedItem) -> ShownItem:
        """An item as the person sees it, with the agent's own reason for it."""
        primary = self.toolbox.primary_attribute or ""
        return ShownItem(
            id=item.id,
            title=natural_title(item.title),
            year=item.year,
            genres=item.attributes.get(primary, []),
            reason=item.reason,
            tool=item.via,
        )

    def say(self, name: str, **values: object) -> str:
        return phrase(self.domain, name, book="chat", **values)

    def format(self, session: ConversationState, turn: Turn, before: list[str], cold: bool = False) -> str:
        """The words `before` the list (`said`: what was understood, what the catalogue cannot
        say), then the list under the standing preferences (and, with no history yet, an invitation)."""
        lines = list(before)
        if not turn.items:
            return "\n".join([*lines, self.say("nothing_new")])
        wish = session.constraints.describe(self.title)
        lines.append(self.say("found", wish=wish) if wish else self.say("found_plain"))
        for n, item in enumerate(turn.items, start=1):
            lines.append(f"{n}. {item_line(item.title, item.year, item.genres)}: {item.reason}")
        return "\n".join([*lines, *([self.say("cold")] if cold else [])])

    def said(self, turn: Turn) -> list[str]:
        """The reply's words before its list: what was understood, what could not be used."""
        lines = []
        if turn.notes:
            lines.append(
                self.say("understood", what="; ".join(turn.notes)) + (f" {self.say('read_by_model')}" if turn.parsed_by != "rules" else "")
            )
        if turn.intent.query:
            lines.append(self.say("text_only", query=turn.intent.query))
        kinds = [k for k in turn.intent.unread if k != "other"]
        if turn.intent.unread_words and not turn.intent.query:  # what the catalogue cannot say, named
            words = '", "'.join(turn.intent.unread_words)
            what = " or ".join(self.say(f"unread_{k}") for k in kinds)
            plain = self.say("guessed" if turn.parsed_by != "rules" else "unusable", words=words)
            lines.append(self.say("unreadable", what=what, words=words) if kinds else plain)
        if turn.set_aside:
            lines.append(self.say("set_aside"))
        return lines


def call_text(tool: str, arguments: dict[str, Any]) -> str:
    """A tool call as a person reads it: retrieve(genres=['Comedy'], k=20)."""
    return f"{tool}({', '.join(f'{k}={v}' for k, v in shown_arguments(arguments).items())})"
