"""Migration 0022: alerts stored before it kept money as floats of minor units; after it, money
alerts hold whole minor units with their currency, and the other alerts keep their floats."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from core.alerts import list_alerts
from core.db.migrate import alembic_config, upgrade

OPENED = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
# The alerts table as migration 0021 left it (only the columns these rows fill).
OLD_ALERTS = sa.table("alerts", sa.column("id", sa.Integer), sa.column("rule", sa.String),
                      sa.column("scope", sa.String), sa.column("status", sa.String),
                      sa.column("severity", sa.String), sa.column("value", sa.Float),
                      sa.column("baseline", sa.Float), sa.column("hint", sa.Text),
                      sa.column("details", sa.JSON), sa.column("opened_at", sa.DateTime(timezone=True)))


def _old(alert_id: int, rule: str, value: float, baseline: float | None, details: dict) -> dict:
    return {"id": alert_id, "rule": rule, "scope": f"s{alert_id}", "status": "open", "severity": "high",
            "value": value, "baseline": baseline, "hint": "h", "details": details, "opened_at": OPENED}


def _migrate(connection: sa.Connection, verb: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, verb)(cfg, revision)


def test_money_alerts_move_to_minor_units_and_back(engine):
    try:
        with engine.begin() as conn:
            _migrate(conn, "downgrade", "0021")
            conn.execute(sa.insert(OLD_ALERTS), [
                _old(1, "large_refund", 125000.0, 50000.0, {"unit": "money", "currency": "EUR"}),
                _old(2, "revenue_drop", 9989.999999, 49950.4, {"unit": "money", "currency": "JPY"}),
                _old(3, "large_refund", 7000.0, None, {"unit": "money"}),  # no currency: the pages said USD
                _old(4, "failure_rate_1h", 0.24, 0.05, {"unit": "percent"}),
                _old(5, "stripe_stale", 10.5, 6.0, {"unit": "hours"}),
            ])
            _migrate(conn, "upgrade", "0022")
        with engine.connect() as conn:
            stored = {r.id: tuple(r)[1:] for r in conn.execute(sa.text(
                "SELECT id, value, baseline, value_minor, baseline_minor, currency FROM alerts ORDER BY id"))}
        assert stored == {
            1: (None, None, 125000, 50000, "EUR"),
            2: (None, None, 9990, 49950, "JPY"),
            3: (None, None, 7000, None, "USD"),
            4: (0.24, 0.05, None, None, None),
            5: (10.5, 6.0, None, None, None),
        }
        shown = {a["id"]: (a["value_text"], a["baseline_text"]) for a in list_alerts(engine)}
        assert shown == {1: ("€1,250.00", "€500.00"), 2: ("¥9,990", "¥49,950"), 3: ("$70.00", "—"),
                         4: ("24.0%", "5.0%"), 5: ("10.5 hours", "6.0 hours")}
        with engine.begin() as conn:
            _migrate(conn, "downgrade", "0021")
            back = {r.id: tuple(r)[1:] for r in conn.execute(sa.text("SELECT id, value, baseline FROM alerts"))}
        assert back == {1: (125000.0, 50000.0), 2: (9990.0, 49950.0), 3: (7000.0, None), 4: (0.24, 0.05),
                        5: (10.5, 6.0)}
    finally:
        upgrade(engine)
