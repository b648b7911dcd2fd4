"""Databases for tests: the test encryption key, the backends every database test runs on
(SQLite always, PostgreSQL when ``TEST_DATABASE_URL`` is set) and scratch PostgreSQL databases.

- ``BACKENDS``: parametrize a fixture with it; the PostgreSQL case is marked ``postgresql``.
- ``scratch_pg_database(label)``: a new PostgreSQL database for this run and worker, migrated to
  head, dropped afterwards (context manager yielding its URL); ``empty_pg_database(url)`` empties
  it again for the next test.
- ``migrated_sqlite(path)``: a SQLite file migrated to head; returns its URL.
- ``mirrored_rows(engine)``: every mirrored table's rows, ids replaced by natural keys.
- ``rollup_snapshot(engine)``: the metric rollups' rows, comparable between two refreshes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from core.db import dispose_all, make_engine
from core.db.migrate import upgrade
from core.models import Base

TEST_KEY = "dGVzdC1rZXktZm9yLW1lbWJlcmRlc2stdGVzdHMtMDA="  # Fernet key used only by tests
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
MIRROR = ("membership_changes", "refunds", "disputes", "payments", "invoice_lines", "invoice_payment_refs", "invoices",
          "subscription_items", "subscriptions", "payment_methods", "members", "prices", "tiers")
# Each table's own natural key: rows and foreign keys are compared by these, not by our integer ids.
NATURAL = {"tiers": "code", "prices": "stripe_price_id", "members": "stripe_customer_id",
           "payment_methods": "stripe_payment_method_id", "subscriptions": "stripe_subscription_id",
           "subscription_items": "stripe_item_id", "invoices": "stripe_invoice_id", "invoice_lines": "stripe_line_id",
           "payments": "stripe_charge_id", "refunds": "stripe_refund_id", "disputes": "stripe_dispute_id"}


def worker() -> str:
    """Unique per run and per worker, so several runs at once never drop each other's database."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"{os.getpid()}")[:10]
    return f"{run}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def migrated_sqlite(path: Path) -> str:
    """A SQLite database file at ``path`` migrated to head; returns its URL."""
    url = f"sqlite:///{path}"
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    return url


@contextmanager
def scratch_pg_database(label: str) -> Iterator[str]:
    """A new PostgreSQL database for this run and worker, migrated to head; dropped afterwards."""
    base = make_url(PG_URL).set(drivername="postgresql+psycopg")
    name = f"memberdesk_{label}_{worker()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    try:
        yield url
    finally:
        dispose_all()  # engines the code under test cached with core.db.connect
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_pg_database(url: str) -> None:
    """Empty every table of the PostgreSQL database at ``url`` (but Alembic's version and the audit
    chain's head, which is reset) and restart their ids, in one transaction: what ``TRUNCATE ...
    RESTART IDENTITY`` of them all did, at a fraction of its cost.

    TRUNCATE gives every table and index it names new files: about half a second for all 50
    tables, before every PostgreSQL test. A test writes to a handful, and few rows: only the tables
    holding rows are emptied, those with a few rows by DELETE with triggers off (as the superuser
    the tests connect as; the audit log's append-only triggers, the word and standing triggers and
    the foreign keys then stay out of it), larger ones by TRUNCATE. Every sequence restarts: an
    insert rolled back leaves no row but moves its sequence on."""
    tables = [t.name for t in Base.metadata.sorted_tables if t.name != "audit_chain_head"] + ["member_words"]
    sizes = " UNION ALL ".join(f"SELECT '{t}', (SELECT COUNT(*) FROM (SELECT 1 FROM \"{t}\" LIMIT {_DELETE_UP_TO + 1}) r)"
                               for t in tables)
    owned_sequences = ("SELECT setval(d.objid, s.seqstart, false) FROM pg_depend d "
                       "JOIN pg_sequence s ON s.seqrelid = d.objid "
                       "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
                       "AND d.deptype IN ('a', 'i') AND d.refobjid = ANY(CAST(:tables AS regclass[]))")
    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            held = {t: n for t, n in conn.execute(text(sizes)) if n}
            if held:
                superuser = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar()
                few = [t for t, n in held.items() if n <= _DELETE_UP_TO] if superuser else []
                many = [t for t in held if t not in few]
                # Triggers off for this transaction (TRUNCATE's too: the audit log refuses it).
                conn.execute(text("SET LOCAL session_replication_role = replica" if superuser else
                                  "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_truncate"))
                if many:
                    conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in many) + " CASCADE"))
                for t in few:
                    conn.execute(text(f'DELETE FROM "{t}"'))
                if not superuser:
                    conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_truncate"))
            conn.execute(text(owned_sequences), {"tables": [f'"{t}"' for t in tables]})
            conn.execute(text("UPDATE audit_chain_head SET seq = 0, hash = :genesis WHERE id = 1"),
                         {"genesis": "0" * 64})
    finally:
        eng.dispose()


_DELETE_UP_TO = 5_000   # rows; a larger table is truncated (DELETE leaves them dead until a VACUUM)


FLOW_TABLES = tuple(f"metrics_{p}_{k}" for p in ("daily", "monthly")
                     for k in ("cash", "payments", "declines", "trials", "cancellations"))


def _every_column(table: str) -> str:
    """The table's group columns, then every measure (all but the id)."""
    cols = [c.name for c in Base.metadata.tables[table].columns if c.name != "id"]
    keys = [c for c in cols if c in _KEY_COLUMNS]
    return ", ".join(keys + [c for c in cols if c not in _KEY_COLUMNS])


_KEY_COLUMNS = ("day", "month", "currency", "tier_id", "interval", "country", "decline_code", "brand", "card_country",
                "reason", "churn_kind")


def rollup_snapshot(engine: Engine) -> dict[str, list]:
    """Every rollup table's rows, groups summed and zeros dropped: equal for equal figures."""
    out = {}
    with engine.connect() as conn:
        for table, cols in (*((t, _every_column(t)) for t in FLOW_TABLES),
                            ("metrics_mrr_periods", "granularity, period, currency, tier_id, interval, country, "
                                                    "mrr_start, mrr_end, new, reactivation, expansion, contraction, "
                                                    "churn, members_start, members_end"),
                            ("metrics_cohorts", "cohort, month, currency, tier_id, members, mrr, size")):
            rows = conn.execute(text(f"SELECT {cols} FROM {table}")).all()
            # Sum duplicates (a refresh may leave several partial rows for one group) and drop zeros.
            agg: dict[tuple, list[int]] = {}
            n_keys = len([c for c in cols.split(", ") if c in (*_KEY_COLUMNS, "granularity", "period", "cohort")])
            for r in rows:
                key = tuple(str(v) for v in r[:n_keys])
                vals = agg.setdefault(key, [0] * (len(r) - n_keys))
                for i, v in enumerate(r[n_keys:]):
                    vals[i] += int(v or 0)
            out[table] = sorted((k, tuple(v)) for k, v in agg.items() if any(v))
    return out


def mirrored_rows(engine: Engine) -> dict[str, list[tuple]]:
    """Every mirrored table's rows with ids replaced by natural keys (ids may differ between passes)."""
    tables = Base.metadata.tables
    keys: dict[str, dict[int, Any]] = {}
    with engine.connect() as conn:
        for name, col in NATURAL.items():
            t = tables[name]
            keys[name] = dict(conn.execute(select(t.c.id, t.c[col])).all())
        out = {}
        for name in MIRROR:
            t = tables[name]
            fks = {fk.parent.name: fk.column.table.name for fk in t.foreign_keys}
            rows = []
            for r in conn.execute(select(t)).mappings():
                rows.append(tuple(sorted(
                    (k, keys[fks[k]].get(v) if k in fks and fks[k] in keys else v)
                    for k, v in r.items() if k != "id")))
            out[name] = sorted(rows, key=repr)
    return out
