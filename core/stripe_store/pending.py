"""Deferred inserts for ``apply_many``: a page's new rows written with one executemany per table.

Outside a page every insert runs at once, exactly as before. Inside ``deferred(session)`` (one page,
in its savepoint) a new row is queued instead, with its id taken in advance, so the handler gets the
id at once and can hand it to children and caches as usual:

- PostgreSQL: ids come from the table's own sequence (``nextval``, a block per page), the same
  values an ``INSERT`` would have drawn, safe with other writers;
- SQLite: ids count up from ``max(id)``, as SQLite itself picks them. Another connection cannot
  insert while our transaction writes; if it did before our first write, the batch fails on the
  primary key, the page rolls back and is applied object by object.

Queued rows are invisible to SQL until written, so they are written (parents' tables first)
before any statement runs in the session that could see them: any statement other than a
``SELECT``, and a ``SELECT`` that names a table with queued rows. Every statement therefore sees
what it would have seen had each insert run at once; the page only saves the round trips. The end
of the page writes what is left; an exception discards the queue with the page's savepoint.
(The check hooks ``Session.execute``: code inside a page must not run SQL on ``session.connection()``
directly, which the hook does not see.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, event, func, select, text, update
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.util import find_tables

from core.models import Base

KEY = "memberdesk_pending_inserts"


class Pending:
    """The queued rows of one page, by table, and the ids handed out in advance."""

    def __init__(self, session: Session, block: int) -> None:
        self.session = session
        self.block = max(block, 1)
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.by_id: dict[tuple[str, int], dict[str, Any]] = {}  # the queued rows given an id
        self.ids: dict[str, list[int]] = {}  # PostgreSQL: drawn from the sequence, not used yet
        self.next_id: dict[str, int] = {}  # SQLite: the next free id
        self.flushing = False
        self.postgres = session.get_bind().dialect.name == "postgresql"

    def take_id(self, table: str) -> int:
        if self.postgres:
            free = self.ids.get(table)
            if not free:
                self.flushing = True  # reads no table: nothing queued needs writing first
                try:
                    free = self.ids[table] = list(self.session.execute(
                        text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
                        {"t": table, "n": self.block}).scalars())
                finally:
                    self.flushing = False
                free.reverse()
            return free.pop()
        if table not in self.next_id:
            t = Base.metadata.tables[table]
            self.next_id[table] = int(self.session.execute(select(func.max(t.c.id))).scalar() or 0) + 1
        our_id = self.next_id[table]
        self.next_id[table] = our_id + 1
        return our_id

    def flush(self) -> None:
        if not self.rows or self.flushing:
            return
        self.flushing = True
        try:
            queued, self.rows = self.rows, {}
            self.by_id.clear()
            for t in _parents_first():
                for group in _same_columns(queued.get(t.name, [])):
                    self.session.execute(t.insert(), group if len(group) > 1 else group[0])
        finally:
            self.flushing = False
        # Anything else inserting from now on picks ids itself: count from the table again.
        self.next_id.clear()

    def before_statement(self, state: ORMExecuteState) -> None:
        if not self.rows or self.flushing:
            return
        if state.is_select:
            select_stmt = cast(ClauseElement, state.statement)  # a SELECT (is_select): a ClauseElement
            named = {t.name for t in find_tables(select_stmt, check_columns=True, include_aliases=True,
                                                 include_joins=True, include_selects=True)
                     if isinstance(t, Table)}
            if not named & self.rows.keys():
                return
        self.flush()


@cache
def _parents_first() -> list[Table]:
    """Every table, each after the tables it points at (the schema does not change while we run)."""
    return list(Base.metadata.sorted_tables)


def _same_columns(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Runs of rows with the same keys (an executemany needs one set of columns)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    yield from groups.values()


def current(session: Session) -> Pending | None:
    return session.info.get(KEY)


@contextmanager
def deferred(session: Session, *, block: int) -> Iterator[Pending]:
    """Queue inserts until ``flush`` (or a statement that needs them); ``block``: ids drawn at once."""
    pending = Pending(session, block)
    session.info[KEY] = pending
    event.listen(session, "do_orm_execute", pending.before_statement)
    try:
        yield pending
    finally:
        event.remove(session, "do_orm_execute", pending.before_statement)
        session.info.pop(KEY, None)


def insert_one(session: Session, table: str, row: dict[str, Any]) -> int:
    """Insert ``row`` and return its id (queued inside ``deferred``)."""
    pending = current(session)
    t = Base.metadata.tables[table]
    if pending is None:
        return int(session.execute(t.insert().returning(t.c.id), row).scalar_one())
    row = {**row, "id": pending.take_id(table)}
    pending.rows.setdefault(table, []).append(row)
    pending.by_id[(table, row["id"])] = row
    return int(row["id"])


def update_row(session: Session, table: str, row_id: int, **values: Any) -> None:
    """``UPDATE table SET values WHERE id = row_id``; a row still queued is changed in the queue."""
    pending = current(session)
    queued = None if pending is None else pending.by_id.get((table, row_id))
    if queued is not None:
        queued.update(values)
        return
    t = Base.metadata.tables[table]
    session.execute(update(t).where(t.c.id == row_id).values(**values))


@cache
def column_names(table: str) -> frozenset[str]:
    return frozenset(c.name for c in Base.metadata.tables[table].c)


def insert_many(session: Session, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows whose ids nobody needs (queued inside ``deferred``)."""
    if not rows:
        return
    pending = current(session)
    if pending is None:
        session.execute(Base.metadata.tables[table].insert(), rows)
    else:
        pending.rows.setdefault(table, []).extend(dict(r) for r in rows)
