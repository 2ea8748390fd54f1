"""The session store: where a conversation's state lives, and how one session's turns take turns.

    Conversation.open(factory, db=".toolrec/sessions.sqlite")          # the default: SQLite, one process
    Conversation.open(factory, db="postgresql://toolrec@db/toolrec")   # several processes or hosts

- SQLite (a file, or memory when None): LangGraph's SQLite checkpointer; one process serves it,
  so a lock per session in that process serialises the session's turns.
- Postgres (a `postgresql://` URL; the `postgres` extra, imported only then): LangGraph's
  Postgres checkpointer, shared by several server processes or hosts, and a session's turns
  serialised across all of them by an advisory lock (`agent.chat.postgres`).

Either way a turn reads the session, runs, and writes it back under the session's lock, so
two turns of one session never both start from the same state.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from agent.chat.records import ConversationState, Knowledge, SessionConstraints, ShownItem, Turn, TurnIntent, TurnResult

StoreKind = Literal["sqlite-file", "sqlite-memory", "postgres"]
POSTGRES_SCHEMES = ("postgresql", "postgres")

# The records a checkpoint holds, allowed back by the session store's deserialiser.
STORED = (ConversationState, SessionConstraints, TurnIntent, TurnResult, Turn, ShownItem, Knowledge)


class SessionStoreError(RuntimeError):
    """The session store cannot be opened (an unreachable database, a missing extra)."""


class SessionBusy(RuntimeError):
    """Another turn of the session held its lock for longer than the wait allowed."""


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=STORED)


def is_postgres_url(text: str) -> bool:
    return urlsplit(text).scheme in POSTGRES_SCHEMES


def shown_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


class TurnLocks(Protocol):
    def hold(self, session_id: str) -> AbstractContextManager[None]: ...


class ProcessLocks:
    """A lock per session in this process: enough where one process serves the sessions."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, session_id: str) -> Iterator[None]:
        with self._guard:
            if len(self._locks) > 10_000:  # forget the locks nobody holds
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks.setdefault(session_id, threading.Lock())
        with lock:
            yield


@dataclass
class SessionStore:
    checkpointer: BaseCheckpointSaver[Any]
    locks: TurnLocks
    kind: StoreKind
    close: Callable[[], None]


def sqlite_store(db: Path | str | None) -> SessionStore:
    """Sessions in the SQLite file `db` (created with its folder), or in memory when None."""
    memory = db is None or str(db) == ":memory:"
    if not memory:
        Path(str(db)).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(":memory:" if memory else str(db), check_same_thread=False)
    saver = SqliteSaver(connection, serde=serializer())
    return SessionStore(saver, ProcessLocks(), "sqlite-memory" if memory else "sqlite-file", connection.close)
