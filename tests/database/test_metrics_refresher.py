"""The background refresher: a request returns at once, requests arriving together are merged,
and the rollups end as a refresh from the earliest instant asked for leaves them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from core.metrics import refresher
from core.metrics.rollups import refresh, state
from core.timeutil import utc_now
from tests.support.factories import at, make_member, make_payment


def test_requests_are_merged_and_the_rollups_catch_up(engine, session):
    member = make_member(session)
    make_payment(session, member=member, amount=1000, created_at=at("2026-03-02 10:00"))
    session.commit()
    refresh(engine, now=at("2026-03-03 00:00"))
    before = state(engine)
    assert before is not None
    # Written after the last refresh, with a time before it (a sync catching up): only a refresh
    # from an instant before it counts it.
    make_payment(session, member=member, amount=234, created_at=at("2026-03-02 12:00"))
    session.commit()
    now = utc_now()
    for minutes in (5, 60, 1):
        refresher.request(engine, now - timedelta(minutes=minutes), what="a test")
    refresher.request(engine, at("2026-03-02 11:00"), what="a late sync")
    assert refresher.wait(timeout=120)
    assert not refresher.busy()
    after = state(engine)
    assert after is not None and after.refreshed_at > before.refreshed_at
    with engine.connect() as conn:
        gross = conn.execute(text("SELECT SUM(gross) FROM metrics_daily_cash")).scalar()
    assert gross == 1234
