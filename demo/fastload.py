"""A fresh bulk load: secondary indexes built once at the end, SQLite without an fsync per chunk.

Used only when every table the loader writes is empty (first start, ``--replace``, benchmarks):
building an index once over sorted data is several times cheaper than keeping it up to date
row by row, and there is nothing in these tables a crash could lose.

- Both databases: the secondary indexes (not primary keys, not unique constraints, which check
  the generated ids as they arrive) of the loaded tables are dropped first and created again
  at the end, also when the load fails, from the definitions the database itself reports.
- PostgreSQL: the foreign keys of the loaded tables are dropped too and added again at the end
  (which checks every row once, by a join, instead of a trigger per row).
- Both databases: the triggers of the loaded tables (``subscriptions.card_valid_until``, migration
  0009; ``invoices.billing_country`` and ``membership_changes.country``, migration 0016; SQLite's member
  search index, 0015) are off during the load (SQLite: dropped and created again; PostgreSQL:
  disabled), and at the end one statement per kept column or index makes them do, once over
  every row, what they skipped.
- SQLite: ``synchronous=OFF`` on the load's connection (no fsync per chunk), restored to
  ``NORMAL`` (``core.db.make_engine``) afterwards. The journal stays WAL: leaving it needs the
  only open connection, and measured no faster; a failed chunk still rolls back. Foreign keys
  stay checked (about 15% of the insert time, and they guard the generator's ids).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, inspect, text

from core.db.search_index import POSTGRES_FILL, SQLITE_FILL

log = logging.getLogger(__name__)


def is_fresh(conn: Connection, tables: tuple[str, ...]) -> bool:
    return all(conn.exec_driver_sql(f"SELECT 1 FROM {name} LIMIT 1").first() is None for name in tables)


def _sqlite_indexes(conn: Connection, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    names = ", ".join(f"'{t}'" for t in tables)
    # sql IS NULL: indexes SQLite made for UNIQUE / PRIMARY KEY constraints (they cannot be dropped).
    rows = conn.exec_driver_sql(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({names}) "
                                "AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE%'").all()
    return [(r[0], r[1]) for r in rows]


def _postgres_indexes(conn: Connection, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    rows = conn.execute(text(
        "SELECT ci.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_class ct ON ct.oid = i.indrelid "
        "WHERE ct.relname = ANY(:tables) AND ct.relnamespace = current_schema()::regnamespace "
        "AND NOT i.indisprimary AND NOT i.indisunique"), {"tables": list(tables)}).all()
    return [(r[0], r[1]) for r in rows]


def _postgres_foreign_keys(conn: Connection, tables: tuple[str, ...]) -> list[tuple[str, str, str]]:
    rows = conn.execute(text(
        "SELECT ct.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_class ct ON ct.oid = c.conrelid "
        "WHERE c.contype = 'f' AND ct.relname = ANY(:tables) AND ct.relnamespace = current_schema()::regnamespace"),
        {"tables": list(tables)}).all()
    return [(r[0], r[1], r[2]) for r in rows]


def _has_table(conn: Connection, name: str) -> bool:
    return inspect(conn).has_table(name)


def _sqlite_triggers(conn: Connection, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    names = ", ".join(f"'{t}'" for t in tables)
    rows = conn.exec_driver_sql(f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                f"AND tbl_name IN ({names})").all()
    return [(r[0], r[1]) for r in rows]


# Naming the card column fires the subscription trigger, which works card_valid_until out again.
# The country triggers (migration 0016) fire on insert only: their columns are filled directly
# (a bulk load writes members before their invoices and changes, so today's country is then's).
# They run before the secondary indexes are built again: a whole-table UPDATE rewrites every row,
# and on PostgreSQL each new row version would otherwise also enter every index (the old versions
# stay until a VACUUM), which at a million members doubled the invoices and their indexes.
_COUNTRY = "UPDATE {t} SET {c} = (SELECT country FROM members m WHERE m.id = {t}.member_id) WHERE {c} IS NULL"
_FILL = {"invoices": _COUNTRY.format(t="invoices", c="billing_country"),
         "membership_changes": _COUNTRY.format(t="membership_changes", c="country")}
_REPLAY = {"subscriptions": "UPDATE subscriptions SET default_payment_method_id = default_payment_method_id"}
# The member search index is kept by triggers on members (SQLite: an FTS5 table, migration 0015;
# PostgreSQL: the member_words table, 0024): filled once from members at the end.
_SEARCH_FILL = {"sqlite": ("members_search", SQLITE_FILL), "postgresql": ("member_words", POSTGRES_FILL)}


@contextmanager
def fresh_load(engine: Engine, tables: tuple[str, ...]) -> Iterator[Connection]:
    """One connection for the whole load; see the module docstring for what changes on it."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        with conn.begin():
            indexes = _sqlite_indexes(conn, tables) if sqlite else _postgres_indexes(conn, tables)
            fks = [] if sqlite else _postgres_foreign_keys(conn, tables)
            for table, name, _ in fks:
                conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for name, _ in indexes:
                conn.exec_driver_sql(f'DROP INDEX "{name}"')
            triggers = _sqlite_triggers(conn, tables) if sqlite else []
            for name, _ in triggers:
                conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
            if not sqlite:
                for table in tables:
                    conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        if sqlite:
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            conn.commit()
        log.info("fresh bulk load: indexes (%d), foreign keys (%d) and triggers deferred to the end",
                 len(indexes), len(fks))
        try:
            yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()
            if sqlite:
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                conn.commit()
            with conn.begin():
                for table, statement in _FILL.items():
                    if table in tables:
                        conn.exec_driver_sql(statement)
                for _, sql in indexes:
                    conn.exec_driver_sql(sql)
                for table, name, definition in fks:
                    conn.exec_driver_sql(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
                for _, sql in triggers:
                    conn.exec_driver_sql(sql)
                if not sqlite:
                    for table in tables:
                        conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
                for table, statement in _REPLAY.items():
                    if table in tables:
                        conn.exec_driver_sql(statement)
                index, statements = _SEARCH_FILL[conn.dialect.name]
                if "members" in tables and _has_table(conn, index):
                    for statement in statements:
                        conn.exec_driver_sql(statement)
