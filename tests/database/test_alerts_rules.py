"""Each rule on a small hand-built world: one where it must fire (with the right scope and hint)
and one where it must not. Worlds are written out here; expected outcomes are stated by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.alerts import evaluate, list_alerts
from core.models import Alert
from tests.support.factories import (
    at,
    make_dispute,
    make_member,
    make_payment,
    make_payment_batch,
    make_price,
    make_refund,
    make_stripe_event,
    make_subscription,
    make_sync_run,
    make_tier,
)

NOW = at("2026-03-10 23:00")  # a Tuesday
DAY, HOUR, WEEK = timedelta(days=1), timedelta(hours=1), timedelta(weeks=1)


def fired(engine, rule: str) -> dict[str, Alert]:
    evaluate(engine, NOW, only=[rule], deliver=False)
    return {a["scope"]: a for a in list_alerts(engine, rule=rule)}


def weekly_baseline(session, member, *, hours: float, count: int, failed: int, **fields) -> None:
    """The same window on each of the four previous weeks."""
    for w in range(1, 5):
        end = NOW - WEEK * w
        make_payment_batch(session, member=member, start=end - timedelta(hours=hours), end=end, count=count,
                           failed=failed, **fields)


class TestFailureRateDay:
    def test_fires_when_failures_double(self, engine, session):
        m = make_member(session)
        weekly_baseline(session, m, hours=24, count=120, failed=6)  # 5% usually
        make_payment_batch(session, member=m, start=NOW - DAY, end=NOW, count=150, failed=36,
                           decline_code="insufficient_funds")
        session.commit()
        alerts = fired(engine, "failure_rate_day")
        assert list(alerts) == ["all"]
        a = alerts["all"]
        assert a["value"] == pytest.approx(36 / 150) and a["baseline"] == pytest.approx(0.05)
        assert "36 of 150" in a["hint"] and "“Insufficient funds”" in a["hint"] and "insufficient_funds" not in a["hint"]
        assert a["severity"] == "high"  # 24% against 5% is 4.8 times: high (critical from 5 times)

    def test_quiet_on_an_ordinary_day(self, engine, session):
        m = make_member(session)
        weekly_baseline(session, m, hours=24, count=120, failed=6)
        make_payment_batch(session, member=m, start=NOW - DAY, end=NOW, count=150, failed=10)
        session.commit()
        assert fired(engine, "failure_rate_day") == {}

    def test_small_numbers_do_not_fire(self, engine, session):
        m = make_member(session)
        weekly_baseline(session, m, hours=24, count=120, failed=6)
        make_payment_batch(session, member=m, start=NOW - DAY, end=NOW, count=25, failed=12)  # under 30 attempts
        session.commit()
        assert fired(engine, "failure_rate_day") == {}


class TestFailureRateHour:
    def test_fires(self, engine, session):
        m = make_member(session)
        weekly_baseline(session, m, hours=1, count=50, failed=3)
        make_payment_batch(session, member=m, start=NOW - HOUR, end=NOW, count=60, failed=25)
        session.commit()
        assert list(fired(engine, "failure_rate_hour")) == ["all"]

    def test_quiet(self, engine, session):
        m = make_member(session)
        weekly_baseline(session, m, hours=1, count=50, failed=3)
        make_payment_batch(session, member=m, start=NOW - HOUR, end=NOW, count=60, failed=5)
        session.commit()
        assert fired(engine, "failure_rate_hour") == {}


class TestFailureConcentration:
    def baseline(self, session, m) -> None:
        start = NOW - DAY - 28 * DAY
        for code, n in (("insufficient_funds", 50), ("do_not_honor", 30), ("expired_card", 20)):
            make_payment_batch(session, member=m, start=start, end=NOW - DAY, count=n, failed=n, decline_code=code)

    def test_names_the_decline_code(self, engine, session):
        m = make_member(session)
        self.baseline(session, m)
        make_payment_batch(session, member=m, start=NOW - DAY, end=NOW, count=10, failed=10, decline_code="do_not_honor")
        make_payment_batch(session, member=m, start=NOW - DAY, end=NOW, count=30, failed=30,
                           decline_code="card_velocity_exceeded")
        session.commit()
        alerts = fired(engine, "failure_concentration")
        assert list(alerts) == ["decline_code=card_velocity_exceeded"]
        hint = alerts["decline_code=card_velocity_exceeded"]["hint"]
        assert hint.startswith("Failures concentrated on decline code “Spending limit reached”: 30 of 40")

    def test_names_the_card_brand(self, engine, session):
        m = make_member(session)
        self.baseline(session, m)  # no brand recorded: "unknown" never fires
        start = NOW - DAY - 28 * DAY
        make_payment_batch(session, member=m, start=start, end=NOW - DAY, count=60, failed=60, card_brand="visa",
                           decline_code="insufficient_funds")
        make_payment_batch(session, member=m, start=start, end=NOW - DAY, count=10, failed=10, card_brand="amex",
                           decline_code="insufficient_funds")
        make_payment_batch(session, member=m, start=NOW - DAY, end=NOW, count=30, failed=30, card_brand="amex",
                           decline_code="insufficient_funds")
        session.commit()
        alerts = fired(engine, "failure_concentration")
        assert "card_brand=amex" in alerts
        assert "card brand “American Express”" in alerts["card_brand=amex"]["hint"]

    def test_quiet_when_the_mix_is_usual(self, engine, session):
        m = make_member(session)
        self.baseline(session, m)
        for code, n in (("insufficient_funds", 20), ("do_not_honor", 12), ("expired_card", 8)):
            make_payment_batch(session, member=m, start=NOW - DAY, end=NOW, count=n, failed=n, decline_code=code)
        session.commit()
        assert fired(engine, "failure_concentration") == {}


class TestRevenueDrop:
    """Money collected is compared over complete UTC days: at 23:00 on Tuesday, Monday."""

    MONDAY_END = at("2026-03-10 00:00")

    def days(self, session, member, *, today: int, usual: int = 50, **fields) -> None:
        for w in range(0, 5):
            end = self.MONDAY_END - WEEK * w
            make_payment_batch(session, member=member, start=end - DAY, end=end, count=usual if w else today,
                               failed=0, **fields)

    def test_fires_per_currency(self, engine, session):
        m = make_member(session)
        self.days(session, m, today=10, currency="EUR")
        self.days(session, m, today=48, currency="USD")
        session.commit()
        alerts = fired(engine, "revenue_drop")
        assert list(alerts) == ["currency=EUR"]
        assert alerts["currency=EUR"]["value"] == 9990 and alerts["currency=EUR"]["baseline"] == 49950
        assert "€99.90 collected in EUR on Mon 2026-03-09 (UTC)" in alerts["currency=EUR"]["hint"]
        assert alerts["currency=EUR"]["window_end"] == self.MONDAY_END

    def test_quiet(self, engine, session):
        m = make_member(session)
        self.days(session, m, today=40)
        session.commit()
        assert fired(engine, "revenue_drop") == {}

    def test_a_quiet_day_so_far_is_not_a_drop(self, engine, session):
        # A normal Monday, and Tuesday until 23:00 with only 5 payments: today is not complete yet.
        m = make_member(session)
        self.days(session, m, today=50)
        for w in range(1, 5):  # earlier Tuesdays were whole days
            make_payment_batch(session, member=m, start=self.MONDAY_END - WEEK * w,
                               end=self.MONDAY_END - WEEK * w + DAY, count=50, failed=0)
        make_payment_batch(session, member=m, start=self.MONDAY_END, end=NOW, count=5)
        session.commit()
        assert fired(engine, "revenue_drop") == {}


def refunds_world(session, today: int, *, dispute: bool = False) -> None:
    m = make_member(session)
    p = make_payment(session, member=m, amount=1999, created_at=NOW - 40 * DAY)
    for d in range(2, 30):  # one a day over the four weeks before
        (make_dispute if dispute else make_refund)(session, payment=p, created_at=NOW - d * DAY + 3 * HOUR)
        if dispute:
            break  # disputes are rarer: one in four weeks
    for i in range(today):
        (make_dispute if dispute else make_refund)(session, payment=p, created_at=NOW - HOUR * (i + 1))
    session.commit()


class TestRefundsAndDisputes:
    def test_refund_burst_fires(self, engine, session):
        refunds_world(session, 9)
        alerts = fired(engine, "refund_spike")
        assert alerts["all"]["value"] == 9 and alerts["all"]["hint"].startswith("9 refunds in the last 24 hours")

    def test_usual_refunds_quiet(self, engine, session):
        refunds_world(session, 2)
        assert fired(engine, "refund_spike") == {}

    def test_dispute_burst_fires(self, engine, session):
        refunds_world(session, 5, dispute=True)
        assert list(fired(engine, "dispute_spike")) == ["all"]

    def test_usual_disputes_quiet(self, engine, session):
        refunds_world(session, 1, dispute=True)
        assert fired(engine, "dispute_spike") == {}


class TestLargeRefund:
    def test_fires_above_the_limit(self, engine, session):
        m = make_member(session)
        p = make_payment(session, member=m, amount=60000, currency="USD", created_at=NOW - 3 * DAY)
        r = make_refund(session, payment=p, amount=40000, created_at=NOW - 2 * HOUR)
        pj = make_payment(session, member=m, amount=30000, currency="JPY", created_at=NOW - 3 * DAY)
        make_refund(session, payment=pj, amount=30000, created_at=NOW - 2 * HOUR)  # ¥30,000: under ¥40,000
        session.commit()
        alerts = fired(engine, "large_refund")
        assert list(alerts) == [f"refund={r.id}"]
        assert "A refund of $400.00" in alerts[f"refund={r.id}"]["hint"]
        stored = session.execute(select(Alert.value, Alert.baseline, Alert.value_minor, Alert.baseline_minor,
                                        Alert.currency).where(Alert.rule == "large_refund")).one()
        assert tuple(stored) == (None, None, 40000, 25000, "USD")  # money in whole cents, not a float

    def test_quiet_below_the_limit(self, engine, session):
        m = make_member(session)
        p = make_payment(session, member=m, amount=20000, created_at=NOW - 3 * DAY)
        make_refund(session, payment=p, amount=20000, created_at=NOW - 2 * HOUR)
        session.commit()
        assert fired(engine, "large_refund") == {}


class TestCancellations:
    def world(self, session, voluntary_today: int) -> None:
        tier = make_tier(session)
        price = make_price(session, tier=tier)
        for d in range(2, 30):
            make_subscription(session, member=make_member(session), price=price, status="canceled",
                              canceled_at=NOW - d * DAY, churn_kind="voluntary")
        for i in range(voluntary_today):
            make_subscription(session, member=make_member(session), price=price, status="canceled",
                              canceled_at=NOW - HOUR * (i + 1), churn_kind="voluntary")
        session.commit()

    def test_fires(self, engine, session):
        self.world(session, 10)
        alerts = fired(engine, "cancellations")
        assert list(alerts) == ["churn=voluntary"]
        assert alerts["churn=voluntary"]["hint"].startswith("10 voluntary cancellations")

    def test_quiet(self, engine, session):
        self.world(session, 3)
        assert fired(engine, "cancellations") == {}


class TestStripeStale:
    def test_no_sync_ever_is_not_stale(self, engine, session):
        assert fired(engine, "stripe_stale") == {}

    def test_fires_when_sync_and_events_are_old(self, engine, session):
        make_sync_run(session, started_at=NOW - 10 * HOUR, finished_at=NOW - 10 * HOUR + timedelta(minutes=1))
        make_stripe_event(session, created_at=NOW - 20 * HOUR)
        session.commit()
        alerts = fired(engine, "stripe_stale")
        assert set(alerts) == {"sync", "events"}
        assert alerts["sync"]["hint"].startswith("No successful Stripe sync since 2026-03-10 13:01 UTC")

    def test_failed_run_fires_and_a_success_clears_it(self, engine, session):
        make_sync_run(session, started_at=NOW - 2 * HOUR, finished_at=NOW - 2 * HOUR, status="succeeded")
        make_sync_run(session, started_at=NOW - HOUR, finished_at=NOW - HOUR, status="failed",
                      error="Stripe answered 401: invalid API key")
        make_stripe_event(session, created_at=NOW - HOUR)
        session.commit()
        alerts = fired(engine, "stripe_stale")
        assert list(alerts) == ["sync_failed"] and "invalid API key" in alerts["sync_failed"]["hint"]
        make_sync_run(session, started_at=NOW - 10 * 60 * timedelta(seconds=1), finished_at=NOW - timedelta(minutes=5))
        session.commit()
        evaluate(engine, NOW, only=["stripe_stale"], deliver=False)
        assert session.scalars(select(Alert.status)).all() == ["resolved"]

    def test_fresh_is_quiet(self, engine, session):
        make_sync_run(session, started_at=NOW - HOUR, finished_at=NOW - HOUR)
        make_stripe_event(session, created_at=NOW - 2 * HOUR)
        session.commit()
        assert fired(engine, "stripe_stale") == {}


def test_a_limit_a_check_divides_by_is_refused_at_zero(engine):
    # stripe_stale with max_hours_without_sync=0 was saved, then failed at every evaluation with
    # "ZeroDivisionError: float division by zero".
    from core.alerts import configure_rule
    from core.permissions import Actor

    with pytest.raises(ValueError, match="max_hours_without_sync takes a number above zero"):
        configure_rule(engine, "stripe_stale", actor=Actor.of("maria", ["manager"]),
                       params={"max_hours_without_sync": 0})
