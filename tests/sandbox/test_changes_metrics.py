"""A staff change shows in the Revenue and Churn numbers without a sync run: a refund at once
(the pages read the rows written since the rollups' last refresh), a cancellation's MRR as soon
as the background refresh the change asked for has run (seconds; the change does not wait)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from core.changes import REASONS, Actor, ChangeInput, submit
from core.db import session_scope
from core.metrics import Query, compute, refresher
from core.metrics.rollups import refresh, state
from core.metrics.source import raw_rows
from core.models import MembershipChange
from core.timeutil import utc_now
from tests.support.changes_world import build, version

SUPPORT = Actor.of("sam", ["support"])


@pytest.fixture
def world(engine, stripe_env):
    w = build(engine, stripe_env.client)
    # The member has paid for 40 days (their MRR history moved back), so a cancellation today is
    # churn of this month (a member who joins and leaves within one month is no movement).
    with session_scope(engine) as s:
        for c in s.scalars(select(MembershipChange).where(MembershipChange.member_id == w.member_id)):
            c.effective_at -= timedelta(days=40)
            c.recorded_at = c.effective_at
    refresh(engine)  # what the last sync run left behind
    return w


def _numbers(engine) -> dict[str, object]:
    """This month's figures as the pages ask for them (through the rollups), checked against the
    same figures computed straight from the rows."""
    start = utc_now().date().replace(day=1)
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    q = Query.make(engine, start=start, end=end, now=utc_now())
    out = {slug: compute(engine, slug, q).value
           for slug in ("refunds", "net_revenue", "mrr", "member_churn_rate", "cancellations")}
    with raw_rows():
        assert out == {slug: compute(engine, slug, q).value for slug in out}
    return out


def _change(engine, world, action, params, reason=None):
    return ChangeInput(action, world.member_id, version(engine, world.member_id), reason or REASONS[action][0],
                       "customer asked", params)


def test_refund_and_cancellation_show_at_once(engine, stripe_env, world):
    before = state(engine)
    assert _numbers(engine) == {"refunds": 0, "net_revenue": 1000, "mrr": 1000, "member_churn_rate": 0.0,
                                "cancellations": 0}

    out = submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": "2.50"}),
                 SUPPORT, stripe=stripe_env.client)
    assert out.status == "applied"
    assert _numbers(engine) == {"refunds": 250, "net_revenue": 750, "mrr": 1000, "member_churn_rate": 0.0,
                                "cancellations": 0}

    out = submit(engine, _change(engine, world, "cancel", {"when": "now"}, reason="too_expensive"), SUPPORT,
                 stripe=stripe_env.client)
    assert out.status == "applied"
    assert refresher.wait(timeout=120)
    assert _numbers(engine) == {"refunds": 250, "net_revenue": 750, "mrr": 0, "member_churn_rate": 1.0,
                                "cancellations": 1}
    after = state(engine)
    assert before is not None and after is not None and after.refreshed_at > before.refreshed_at
