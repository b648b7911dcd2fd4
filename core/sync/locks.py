"""One sync at a time, across processes and machines sharing the database.

- PostgreSQL: ``pg_try_advisory_lock`` on a connection held open for the whole run; the lock
  dies with the connection, so a killed process never leaves it behind. The holder is also
  written to ``run_locks`` (information only) so the loser can say who holds it.
- SQLite: a ``run_locks`` row with holder and expiry, taken inside ``BEGIN IMMEDIATE`` (which
  takes SQLite's write lock up front, so two processes cannot both see "free" and both insert).
  The holder extends the expiry while it works (``heartbeat``); a row whose holder died is taken
  over once expired, or at once when the holder ran on this host and its process is gone (a
  ``kill -9`` no longer blocks syncs for the ten minutes of the expiry).

``acquire()`` never waits: it returns a held ``Lock`` or raises ``LockBusy`` whose sentence names
the holder.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, text

from core.timeutil import ensure_aware, utc_now

DEFAULT_TTL = timedelta(minutes=10)


class LockBusy(RuntimeError):
    """Another run holds the lock; ``str(error)`` says who and since when."""

    def __init__(self, name: str, holder: str | None, since: datetime | None) -> None:
        self.holder = holder
        self.since = since
        who = holder or "another process"
        when = f" since {since:%Y-%m-%d %H:%M:%S} UTC" if since else ""
        super().__init__(f"Another sync is running ({name} held by {who}{when}); this run did nothing.")


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(holder: str | None) -> bool:
    """True when ``holder`` ("host:pid") names a process on this host that no longer exists. A holder
    on another host, or one we may not signal, is presumed alive (only its expiry frees the lock)."""
    host, _, pid = (holder or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) <= 0:
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, under another user
        return False
    return False


def _advisory_key(name: str) -> int:
    # Signed 64-bit key, stable across processes (hash() is salted per process).
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@dataclass
class Lock:
    engine: Engine
    name: str
    holder: str
    ttl: timedelta = DEFAULT_TTL
    _conn: Connection | None = field(default=None, repr=False)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def heartbeat(self, now: datetime | None = None) -> None:
        """Push the expiry forward (SQLite); a no-op on PostgreSQL where the lock lives with the session."""
        now = now or utc_now()
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE run_locks SET expires_at = :exp WHERE name = :name AND holder = :holder"),
                {"exp": _db_time(self.engine, now + self.ttl), "name": self.name, "holder": self.holder},
            )

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text("DELETE FROM run_locks WHERE name = :name AND holder = :holder"),
                {"name": self.name, "holder": self.holder},
            )
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _advisory_key(self.name)})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _db_time(engine: Engine, moment: datetime) -> datetime | str:
    # Raw SQL bypasses UTCDateTime; store what the ORM column type would (naive UTC on SQLite).
    if engine.dialect.name == "sqlite":
        return ensure_aware(moment).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


def _parse(value: object) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    # SQLite hands back naive UTC text; PostgreSQL an aware value.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def current_holder(engine: Engine, name: str) -> tuple[str | None, datetime | None, datetime | None]:
    """(holder, acquired_at, expires_at) of the ``run_locks`` row, or Nones."""
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT holder, acquired_at, expires_at FROM run_locks WHERE name = :name"), {"name": name}
        ).first()
    if row is None:
        return None, None, None
    return row[0], _parse(row[1]), _parse(row[2])


def acquire(
    engine: Engine,
    name: str = "stripe_sync",
    *,
    holder: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> Lock:
    """Take the named lock or raise ``LockBusy``; never blocks."""
    holder = holder or default_holder()
    now = now or utc_now()
    if engine.dialect.name == "postgresql":
        return _acquire_pg(engine, name, holder, ttl, now)
    return _acquire_sqlite(engine, name, holder, ttl, now)


def _acquire_pg(engine: Engine, name: str, holder: str, ttl: timedelta, now: datetime) -> Lock:
    conn = engine.connect()
    try:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _advisory_key(name)}).scalar()
        conn.commit()
    except BaseException:
        conn.close()
        raise
    if not got:
        conn.close()
        who, since, _ = current_holder(engine, name)
        raise LockBusy(name, who, since)
    lock = Lock(engine, name, holder, ttl, _conn=conn)
    try:
        with engine.begin() as tx:
            tx.execute(text("DELETE FROM run_locks WHERE name = :name"), {"name": name})
            tx.execute(
                text("INSERT INTO run_locks (name, holder, acquired_at, expires_at) VALUES (:n, :h, :a, :e)"),
                {"n": name, "h": holder, "a": now, "e": now + ttl},
            )
    except BaseException:
        lock.release()
        raise
    return lock


def _acquire_sqlite(engine: Engine, name: str, holder: str, ttl: timedelta, now: datetime) -> Lock:
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        previous = dbapi.isolation_level
        dbapi.isolation_level = None  # we issue BEGIN IMMEDIATE ourselves
        cur = dbapi.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            row = cur.execute(
                "SELECT holder, acquired_at, expires_at FROM run_locks WHERE name = ?", (name,)
            ).fetchone()
            if (row is not None and (expires := _parse(row[2])) is not None and expires > now
                    and not holder_is_dead(row[0])):
                cur.execute("ROLLBACK")
                raise LockBusy(name, row[0], _parse(row[1]))
            cur.execute("DELETE FROM run_locks WHERE name = ?", (name,))
            cur.execute(
                "INSERT INTO run_locks (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)",
                (name, holder, _db_time(engine, now), _db_time(engine, now + ttl)),
            )
            cur.execute("COMMIT")
        except LockBusy:
            raise
        except BaseException:
            if dbapi.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()
            dbapi.isolation_level = previous
    finally:
        raw.close()
    return Lock(engine, name, holder, ttl)
