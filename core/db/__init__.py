"""Engine and sessions.

``connect(settings)`` is the one way to get an engine: it installs the encryption key ring, turns
on SQLite's foreign keys and WAL mode (PostgreSQL: parallel workers only for large reads), and
caches one engine per URL. Write paths own their
transaction with ``with session_scope(engine) as s:`` (commit on success, rollback on error).
Engines hide bound values in their error messages (``hide_parameters``): those values are member
e-mails and names, and an error's text ends up in logs and in ``stripe_events.last_error``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from core import crypto
from core.settings import Settings

_engines: dict[str, Engine] = {}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _write_lock_first(conn: Connection, _name: str) -> None:
            # A SAVEPOINT outside a transaction opens a deferred one: its first read fixes a
            # snapshot, and a write after another connection has committed fails at once with
            # "database is locked", without waiting (SQLite cannot move a stale snapshot forward).
            # Every Stripe event applied in its savepoint failed so while the staff change that
            # caused it was being written. Taking the write lock first makes it wait its turn.
            raw = conn.connection.driver_connection
            if raw is not None and not raw.in_transaction:
                raw.execute("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _postgres_session(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Parallel workers only for reads large enough to repay starting them. A page's reads go
        # through indexes and take a few milliseconds, and PostgreSQL's default cost of starting
        # workers (1,000) let it plan two workers for some of them: 15 ms instead of 6 for the
        # revenue-at-risk totals at a million members, the time going into starting the workers
        # (docs/benchmarks.md). A full rollup build's scans cost millions and stay parallel.
        # Outside a transaction, so the setting is the session's and no transaction is left open.
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        cur = dbapi_conn.cursor()
        cur.execute(f"SET parallel_setup_cost = {PARALLEL_SETUP_COST}")
        cur.close()
        dbapi_conn.autocommit = autocommit

    return engine


PARALLEL_SETUP_COST = 10_000


def connect(settings: Settings) -> Engine:
    """The engine for ``settings`` (cached per URL), with the key ring installed."""
    crypto.set_keyring(crypto.KeyRing(list(settings.encryption_keys)))
    engine = _engines.get(settings.database_url)
    if engine is None:
        engine = _engines[settings.database_url] = make_engine(settings.database_url)
    return engine


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits when the block ends normally, rolls back on any exception."""
    session = sessionmaker(engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def affected_rows(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. ``Session.execute`` is typed to return a plain ``Result``;
    for those statements it is always a ``CursorResult``, which has the count."""
    return cast("CursorResult[Any]", result).rowcount
