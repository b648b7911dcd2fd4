"""Row dicts -> database-ready value lists, the columns' bind processors applied.

The bulk loader writes tens of millions of values, so this is the cheap version of what
SQLAlchemy does per value: a row becomes a list in column order by one ``itemgetter`` call (over
the column defaults merged with the row when it lacks a column), and only the columns whose type changes the value get a
processor: encrypted text (Fernet, ``core.db.types``), times, numerics. Booleans need none (both
drivers take Python's ``bool``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Boolean, Table
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from core.db.types import UTCDateTime
from core.models import Base


def sqlite_time_format() -> Callable[[datetime], str]:
    """UTCDateTime's SQLite storage: naive UTC in SQLAlchemy's text format
    ('2026-11-27 00:00:00.000000'), without two layers of processors. Each distinct time is
    formatted once (rows share many: created, finalized and period bounds, the state time)."""
    cache: dict[datetime, str] = {}

    def fmt(value: datetime) -> str:
        text = cache.get(value)
        if text is None:
            if len(cache) > 200_000:
                cache.clear()
            if value.tzinfo is not UTC:
                if value.tzinfo is None:
                    raise ValueError("naive datetime refused: store timezone-aware UTC times")
                value = value.astimezone(UTC)
            text = cache[value] = value.isoformat(" ", "microseconds")[:26]
        return text

    return fmt


def _postgres_time(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: store timezone-aware UTC times")
    return value.astimezone(UTC)


class Encoder:
    """Per table: column names and a function from row dicts to value lists."""

    def __init__(self, dialect: Any, tables: tuple[str, ...]):
        self.columns: dict[str, list[str]] = {}
        self._blank: dict[str, dict[str, Any]] = {}
        self._get: dict[str, Callable[[dict], tuple]] = {}
        self._procs: dict[str, list[tuple[int, Callable[[Any], Any]]]] = {}
        sqlite_time = sqlite_time_format()
        for name in tables:
            table: Table = Base.metadata.tables[name]
            cols = list(table.columns)
            self.columns[name] = [c.name for c in cols]
            self._blank[name] = {c.name: c.default.arg if isinstance(c.default, ScalarElementColumnDefault) else None
                                 for c in cols}
            self._get[name] = itemgetter(*self.columns[name])
            procs = []
            for i, col in enumerate(cols):
                if isinstance(col.type, UTCDateTime):
                    procs.append((i, sqlite_time if dialect.name == "sqlite" else _postgres_time))
                elif not isinstance(col.type, Boolean):
                    proc = col.type._cached_bind_processor(dialect)
                    if proc is not None:
                        procs.append((i, proc))
            self._procs[name] = procs

    def encode(self, table: str, rows: list[dict[str, Any]]) -> list[list[Any]]:
        blank, get, procs = self._blank[table], self._get[table], self._procs[table]
        out = []
        for row in rows:
            try:
                values = list(get(row))
            except KeyError:  # a column the mapping leaves to its default
                values = list(get({**blank, **row}))
            for i, proc in procs:
                value = values[i]
                if value is not None:
                    values[i] = proc(value)
            out.append(values)
        return out
