"""Alerts as people meet them: the audit entries carry the moment of the evaluation that made them
(the demo's history, evaluated as of past days, shows in the audit log on those days, not at the
time it was loaded), and the history finds an alert by the rule's title the page shows."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.alerts import evaluate, list_alerts
from core.models import AuditEntry
from tests.support.factories import at, make_sync_run

NOW = at("2026-03-10 23:00")
HOUR = timedelta(hours=1)


def test_opened_and_resolved_entries_carry_the_evaluation_moment(engine, session):
    make_sync_run(session, started_at=NOW - 10 * HOUR, finished_at=NOW - 10 * HOUR)
    session.commit()
    evaluate(engine, NOW, deliver=False)
    make_sync_run(session, started_at=NOW + HOUR, finished_at=NOW + HOUR)  # the sync works again
    session.commit()
    evaluate(engine, NOW + 2 * HOUR, deliver=False)
    session.expire_all()
    entries = [(e.action, e.at) for e in session.scalars(
        select(AuditEntry).where(AuditEntry.action.like("alert.%")).order_by(AuditEntry.seq))]
    assert entries == [("alert.open", NOW), ("alert.resolved", NOW + 2 * HOUR)]


def test_history_search_finds_an_alert_by_its_rules_title(engine, session):
    make_sync_run(session, started_at=NOW - 10 * HOUR, finished_at=NOW - 10 * HOUR)
    session.commit()
    evaluate(engine, NOW, deliver=False)
    assert [a["rule"] for a in list_alerts(engine, search="data STALE")] == ["stripe_stale"]
    assert [a["rule"] for a in list_alerts(engine, search="stripe_stale")] == ["stripe_stale"]
    assert list_alerts(engine, search="refunds above") == []
