"""An alert's audit entries carry the moment of the evaluation that made them: the demo's history,
evaluated as of past days, shows in the audit log on those days, not at the time it was loaded."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.alerts import evaluate
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
