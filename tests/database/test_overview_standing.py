"""The Overview's counts, read from the standing counts and the daily rollups plus what was
written since their last refresh, equal the scans of the tables (``tests/support/overview_reference``)
on seeded random worlds: after random changes to subscriptions and members (before any refresh,
after changes not yet refreshed, and after incremental refreshes), and for this month's payments
with rows written after the refresh. ``now`` is pinned; seeds are fixed."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

import tests.support.overview_reference as reference
from core.metrics import overview_counts
from core.metrics.rollups import refresh
from core.models import Member, Price, Subscription
from tests.support.factories import at, make_member, make_payment, make_refund, make_subscription
from tests.support.worlds import build_random_world

REFRESHED = at("2026-06-20 12:00")  # the rollups' last refresh: mid-month
ASKED = at("2026-06-27 15:30")  # the question: a week of rows written since
STATUSES = ("active", "trialing", "past_due", "paused", "unpaid", "canceled", "incomplete", "incomplete_expired")


def assert_counts_match(engine) -> None:
    new, old = overview_counts.members_by_tier_status(engine), reference.members_by_tier_status(engine)
    assert new.to_dict("records") == old.to_dict("records")
    assert (overview_counts.mrr_by_currency(engine).to_dict("records")
            == reference.mrr_by_currency(engine).to_dict("records"))


def marks(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM metrics_standing_marks")).scalar_one())


def stored(engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {t: sorted((tuple(r) for r in conn.execute(text(f"SELECT {cols} FROM {t}"))), key=repr)
                for t, cols in (("metrics_member_standing", "member_id, tier_id, status"),
                                ("metrics_member_mrr", "member_id, currency, mrr_minor, subscriptions"),
                                ("metrics_standing_counts", "tier_id, status, members"),
                                ("metrics_mrr_counts", "currency, mrr_minor, subscriptions"))}


def shuffle(session: Session, rng: random.Random, n: int) -> None:
    """``n`` random writes: statuses, tiers, MRR, currencies, new members with and without a
    subscription, a second subscription, a subscription moved to another member, deletions."""
    subs = list(session.scalars(select(Subscription).order_by(Subscription.id)))
    members = list(session.scalars(select(Member).order_by(Member.id)))
    prices = list(session.scalars(select(Price).order_by(Price.id)))
    for _ in range(n):
        what = rng.choice(["status", "status", "tier", "mrr", "currency", "new member", "new free member",
                           "second", "move", "delete", "created"])
        sub = rng.choice(subs)
        if what == "status":
            sub.status = rng.choice(STATUSES)
        elif what == "tier":
            sub.tier_id = rng.choice(prices).tier_id
        elif what == "mrr":
            sub.mrr_minor = rng.choice([0, 500, 1000, 2500])
        elif what == "currency":
            sub.currency = rng.choice(["USD", "EUR", "GBP", "JPY"])
        elif what == "created":
            sub.created_at = sub.created_at - timedelta(days=rng.randint(-400, 400))
        elif what in ("new member", "new free member"):
            member = make_member(session)
            members.append(member)
            if what == "new member":
                subs.append(make_subscription(session, member=member, price=rng.choice(prices),
                                              status=rng.choice(STATUSES), mrr_minor=rng.choice([0, 700]),
                                              created_at=at("2026-06-21 00:00")))
        elif what == "second":
            subs.append(make_subscription(session, member=rng.choice(members), price=rng.choice(prices),
                                          status=rng.choice(STATUSES), mrr_minor=rng.choice([0, 900]),
                                          created_at=at("2026-05-01 00:00") + timedelta(days=rng.randint(0, 60))))
        elif what == "move":
            sub.member_id = rng.choice(members).id
        elif what == "delete":
            # A member with nothing else on record, or a subscription with no history.
            loose = [s for s in subs if s.id not in set(session.scalars(text(
                "SELECT subscription_id FROM membership_changes UNION SELECT subscription_id FROM invoices "
                "WHERE subscription_id IS NOT NULL")))]
            if loose:
                gone = rng.choice(loose)
                subs.remove(gone)
                session.execute(delete(Subscription).where(Subscription.id == gone.id))
        session.flush()
    session.commit()


@pytest.mark.parametrize("seed", [3, 11])
def test_standing_counts_equal_the_scans_after_changes_and_refreshes(engine, session, seed):
    build_random_world(session, seed, members=30)
    for _ in range(4):  # members who never subscribed
        make_member(session)
    session.commit()
    # Never refreshed: the readers work every member out from the subscriptions.
    assert_counts_match(engine)
    refresh(engine, now=REFRESHED)
    assert marks(engine) == 0
    assert_counts_match(engine)
    rng = random.Random(seed)
    for round_ in range(3):
        shuffle(session, rng, 12)
        assert marks(engine) > 0
        assert_counts_match(engine)  # the sums plus the members marked since
        refresh(engine, REFRESHED, now=REFRESHED + timedelta(minutes=round_ + 1))
        assert marks(engine) == 0
        assert_counts_match(engine)
    # A full rebuild holds the same rows as the refreshes that led here.
    before = stored(engine)
    refresh(engine, now=REFRESHED + timedelta(minutes=9))
    assert stored(engine) == before


def test_standing_counts_after_a_bulk_write_beyond_the_member_by_member_limit(engine, session, monkeypatch):
    """More marks than the refresh works out member by member: it builds everything again."""
    from core.metrics import standing

    build_random_world(session, 5, members=12)
    refresh(engine, now=REFRESHED)
    shuffle(session, random.Random(5), 10)
    monkeypatch.setattr(standing, "REBUILD_FROM_MARKS", 3)
    refresh(engine, REFRESHED, now=REFRESHED + timedelta(minutes=1))
    assert marks(engine) == 0
    assert_counts_match(engine)


@pytest.mark.parametrize("seed", [4, 9])
def test_payments_this_month_equal_the_scan_with_rows_written_after_the_refresh(engine, session, seed):
    build_random_world(session, seed, members=40)
    refresh(engine, now=REFRESHED)
    rng = random.Random(seed)
    members = list(session.scalars(select(Member).order_by(Member.id)))
    # Written after the refresh (times after its ``now``: an earlier time is the sync's to
    # report, which asks for a refresh from it): some before the question, some after it.
    for i in range(15):
        when = REFRESHED + timedelta(hours=rng.randint(0, 300), minutes=i)
        member = rng.choice(members)
        pay = make_payment(session, member=member, amount=rng.choice([500, 1200]), currency=rng.choice(["USD", "EUR"]),
                           status=rng.choice(["succeeded", "succeeded", "failed", "pending"]), created_at=when)
        if pay.status == "succeeded" and rng.random() < 0.5:
            make_refund(session, payment=pay, amount=pay.amount // 4, created_at=when + timedelta(days=2))
    session.commit()
    seen = 0
    for asked in (ASKED, REFRESHED - timedelta(days=3), at("2026-06-30 23:59")):
        new = overview_counts.payments_in_month(engine, now=asked, tz="UTC")
        old = reference.payments_in_month(engine, now=asked, tz="UTC")
        assert new.to_dict("records") == old.to_dict("records")
        seen += int(new["attempts"].sum())
    assert seen > 0
