"""The Overview's cards kept by the server: the same numbers as asking the registry, shared by
every session within the minute, computed again after it, and kept ahead by the keeper thread."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest

from core.metrics import kept, page_bundle
from core.metrics.rollups import refresh
from tests.support.factories import at, make_member, make_payment

ASKED = at("2026-03-09 18:43")


@pytest.fixture(autouse=True)
def _nothing_kept():
    kept.forget()
    yield
    kept.forget()


def _cards(bundle):
    return [(k.slug, k.value, k.previous, k.compared) for k in bundle.kpis]


@pytest.fixture
def paid(engine, session):
    member = make_member(session)
    make_payment(session, member=member, amount=1200, created_at=at("2026-03-02 10:00"))
    make_payment(session, member=member, amount=800, created_at=at("2026-02-03 09:00"))
    session.commit()
    refresh(engine, now=at("2026-03-09 12:00"))
    return member


def test_the_kept_answer_is_the_registry_answer(engine, paid):
    got = kept.overview(engine, "mtd", ASKED)
    query = kept.overview_query(engine, "mtd", ASKED)
    assert (query.start.isoformat(), query.end.isoformat(), query.granularity) == ("2026-03-01", "2026-03-10", "day")
    assert got.as_of == ASKED
    assert _cards(got.bundle) == _cards(page_bundle(engine, "overview", query))
    assert dict((k.slug, k.value) for k in got.bundle.kpis)["net_revenue"] == 1200


def test_shared_within_the_minute_and_computed_again_after(engine, session, paid):
    first = kept.overview(engine, "mtd", ASKED)
    make_payment(session, member=paid, amount=500, created_at=ASKED + timedelta(seconds=10))
    session.commit()
    # Within the minute: the same answer (as of when it was computed), for every session.
    assert kept.overview(engine, "mtd", ASKED + timedelta(seconds=40)) is first
    # After it: computed again, and the payment made meanwhile counts.
    later = kept.overview(engine, "mtd", ASKED + kept.FRESH + timedelta(seconds=1))
    assert later is not first
    assert dict((k.slug, k.value) for k in later.bundle.kpis)["net_revenue"] == 1700
    # Another period is another question.
    assert kept.overview(engine, "30d", ASKED + timedelta(seconds=40)) is not first


def test_the_keeper_answers_before_anyone_asks(engine, paid):
    keeper = kept.Keeper(engine, every=timedelta(seconds=3))
    keeper.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            from core.timeutil import utc_now

            query = kept.overview_query(engine, kept.DEFAULT_PERIOD, utc_now())
            if kept._latest(kept._key(engine, query)) is not None:
                break
            time.sleep(0.1)
        got = kept._latest(kept._key(engine, query))
        assert got is not None
        first = got.as_of
        # Kept fresh: a newer answer lands before the first is three seconds old.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and kept._latest(kept._key(engine, query)).as_of == first:
            time.sleep(0.1)
        assert kept._latest(kept._key(engine, query)).as_of > first
    finally:
        keeper.stop()


def test_a_saved_rate_is_a_new_question_at_once(engine, session, paid):
    """An admin saved EUR at 1.30 and the Overview kept showing the minute's answer at the old rate
    ("Changes apply everywhere at once", said the Admin page). The kept answer is keyed by the FX
    rates' digest: the next visitor within the same minute gets the numbers at the new rate."""
    from core.metrics import source
    from core.permissions import Actor
    from core.settings.business import save_rate

    make_payment(session, member=paid, amount=1000, currency="EUR", created_at=at("2026-03-03 10:00"))
    session.commit()
    refresh(engine, now=at("2026-03-09 12:00"))
    first = kept.overview(engine, "mtd", ASKED)
    # 12.00 USD, and 10.00 EUR at the seeded 2026 rate of 1.16
    assert dict((k.slug, k.value) for k in first.bundle.kpis)["net_revenue"] == 1200 + 1160
    save_rate(engine, actor=Actor.of("admin", ["admin"]), currency="EUR", month="2026-03", usd_per_unit="1.30")
    later = kept.overview(engine, "mtd", ASKED + timedelta(seconds=10))
    assert later is not first
    assert dict((k.slug, k.value) for k in later.bundle.kpis)["net_revenue"] == 1200 + 1300
    # The rollups keep each original currency, so they need no rebuild: still read, same as the raw rows.
    assert later.bundle.freshness.from_rollups
    with source.raw_rows():
        raw = page_bundle(engine, "overview", kept.overview_query(engine, "mtd", ASKED + timedelta(seconds=10)))
    assert _cards(later.bundle) == _cards(raw)


def test_a_chosen_period_is_kept_fresh_while_the_overview_is_in_use(engine, paid):
    """"Year to date" took 5 s in the browser at a million members when chosen, and again on each
    visit after its minute: once chosen, the keeper keeps it fresh. Not every period as soon as the
    Overview opens: that burst of work slowed the first page after a restart."""
    from core.timeutil import utc_now

    assert kept.wanted(engine, utc_now()) == ("mtd",)  # nobody asked: the default only
    kept.overview(engine, "mtd")
    assert kept.wanted(engine, utc_now()) == ("mtd",)  # the Overview opened: still the default only
    asked = kept.overview(engine, "ytd")
    assert kept.wanted(engine, utc_now()) == ("mtd", "ytd")
    assert kept.wanted(engine, utc_now() + kept.WANTED + timedelta(seconds=1)) == ("mtd",)
    keeper = kept.Keeper(engine, every=timedelta(seconds=3))
    keeper.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            query = kept.overview_query(engine, "ytd", utc_now())
            latest = kept._latest(kept._key(engine, query))
            if latest is not None and latest.as_of > asked.as_of:
                break
            time.sleep(0.1)
        ytd = kept._latest(kept._key(engine, query))
        assert ytd is not None and ytd.as_of > asked.as_of  # the keeper's: nobody asked again
        assert _cards(ytd.bundle) == _cards(page_bundle(engine, "overview", replace(query, now=ytd.as_of)))
    finally:
        keeper.stop()


def test_a_grace_days_change_is_not_answered_by_the_minute_before_the_rebuild(engine, session):
    """A past-due member is MRR by "until Stripe ends them", lost after 7 grace days. Changed: until
    the rebuild the figures are the previous setting's, and the page says so; once rebuilt, the
    next visitor within the minute gets the new figures, not the answer kept meanwhile."""
    from core.metrics import source
    from core.settings import business
    from tests.support.factories import make_change, make_price, make_subscription, make_tier

    price = make_price(session, tier=make_tier(session), unit_amount=1000)
    sub = make_subscription(session, member=make_member(session), price=price, status="past_due")
    make_change(session, subscription=sub, effective_at=at("2026-01-05 10:00"), mrr_after=1000, kind="started")
    make_change(session, subscription=sub, effective_at=at("2026-02-20 10:00"), mrr_before=1000, mrr_after=1000,
                from_status="active", to_status="past_due")
    session.commit()
    refresh(engine, now=at("2026-03-09 12:00"))

    def mrr(answer: kept.Answer) -> int:
        return dict((k.slug, k.value) for k in answer.bundle.kpis)["mrr"]

    assert mrr(kept.overview(engine, "mtd", ASKED)) == 1000
    # Saved, its rebuild not yet done: the setting written and the rollups marked stale as the save
    # does, without the background rebuild the save asks for (it could finish before the reads).
    from core.metrics.rollups import mark_stale
    from core.models import Setting

    session.add(Setting(key="past_due_grace_days", value=7, updated_at=ASKED, updated_by="ada"))
    mark_stale(session)
    session.commit()
    assert business.load(engine).past_due_grace_days == 7
    during = kept.overview(engine, "mtd", ASKED + timedelta(seconds=5))
    assert mrr(during) == 1000  # the segments still cut by the previous setting
    sentence = source.status(engine, kept.overview_query(engine, "mtd", ASKED)).sentence()
    assert "still count past-due members as the previous grace days did (lost until Stripe ends them)" in sentence
    refresh(engine, now=at("2026-03-09 12:00"))  # the rebuild the save asked for
    after = kept.overview(engine, "mtd", ASKED + timedelta(seconds=10))
    assert after is not during and mrr(after) == 0
