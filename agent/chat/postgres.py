"""Sessions in Postgres, shared by several server processes or hosts (the `postgres` extra:
langgraph-checkpoint-postgres over psycopg 3; imported only for a `postgresql://` URL).

A session's turns are serialised across every process by a transaction-scoped advisory lock on
the session id's hash, taken on a connection of its own and held for the whole turn; the
transaction's end releases it, so a worker that dies mid-turn cannot leave it held. Within a
process the process's own lock comes first, so that its threads queue there rather than each
holding a connection. The lock connections come from a pool apart from the checkpointer's: a
turn holding its lock must always be able to read and write its checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langgraph.checkpoint.postgres import PostgresSaver
from psycopg import Connection, Error
from psycopg.errors import LockNotAvailable
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from agent.chat.store import ProcessLocks, SessionBusy, SessionStore, SessionStoreError, serializer, shown_url

# The advisory locks' first key, so that toolrec's never meet another application's in the same
# database: "tool" in ASCII. The second is the session id's hash (0: the schema set-up).
NAMESPACE = 0x746F6F6C
SETUP = 0
LOCK = "SELECT pg_advisory_xact_lock(%s::int4, hashtext(%s))"
CONNECT_TIMEOUT_S = 10
SETUP_WAIT_S = 120


class AdvisoryLocks:
    """One session's turns, one at a time across every process that shares the database."""

    def __init__(self, pool: ConnectionPool[Connection[DictRow]], lock_timeout_s: float) -> None:
        self.pool, self.lock_timeout_ms = pool, max(1, int(lock_timeout_s * 1000))
        self.local = ProcessLocks()

    @contextmanager
    def hold(self, session_id: str) -> Iterator[None]:
        with self.local.hold(session_id), self.pool.connection() as connection:
            connection.execute("SELECT set_config('lock_timeout', %s, true)", (f"{self.lock_timeout_ms}ms",))
            try:
                connection.execute(LOCK, (NAMESPACE, session_id))
            except LockNotAvailable as exc:
                raise SessionBusy(f"session {session_id!r} is busy with another turn; try again shortly") from exc
            yield  # the transaction, and with it the lock, ends when the connection goes back


def postgres_store(url: str, *, connections: int, lock_timeout_s: float) -> SessionStore:
    """The Postgres checkpointer (its tables created on first use) and the advisory turn locks."""
    options = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}  # what the checkpointer needs
    saves: ConnectionPool[Connection[DictRow]] = ConnectionPool(url, min_size=1, max_size=2, kwargs=options, open=False)
    locks: ConnectionPool[Connection[DictRow]] = ConnectionPool(
        url, min_size=1, max_size=max(1, connections), kwargs={"row_factory": dict_row}, open=False
    )

    def close() -> None:
        locks.close()
        saves.close()

    saver = PostgresSaver(saves, serde=serializer())
    try:
        # one connection first: it says at once why the database cannot be used, and holds the
        # set-up lock so that workers starting together create the tables once
        with Connection.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as first:
            _take_setup_lock(first, url)
            saves.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            locks.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            saver.setup()
    except Error as exc:  # a pool's timeout is one too
        close()
        raise SessionStoreError(f"cannot use the sessions database {shown_url(url)}: {exc}") from exc
    return SessionStore(saver, AdvisoryLocks(locks, lock_timeout_s), "postgres", close)


def _take_setup_lock(connection: Connection[Any], url: str) -> None:
    """The set-up lock, for this connection's session. Tried again and again rather than waited
    for: a statement waiting for it would hold a snapshot, which the set-up's CREATE INDEX
    CONCURRENTLY in the worker holding the lock waits for in turn (both would wait forever)."""
    deadline = time.monotonic() + SETUP_WAIT_S
    while True:
        row = connection.execute("SELECT pg_try_advisory_lock(%s::int4, %s::int4)", (NAMESPACE, SETUP)).fetchone()
        if row is not None and row[0]:
            return
        if time.monotonic() > deadline:
            raise SessionStoreError(f"another process has been setting up the sessions database {shown_url(url)} for {SETUP_WAIT_S} s")
        time.sleep(0.1)
