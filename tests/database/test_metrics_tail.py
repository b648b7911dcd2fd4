"""The rollups plus the tail since their last refresh give what the raw rows give, at any minute.

The rollups are refreshed at an odd minute in a business time zone with daylight saving time;
pages then ask at other odd minutes (later, across the spring-forward night, and earlier than the
refresh), by day, week and month. Every number of every dashboard page must equal the same
question answered from the raw rows. And reading never writes: a page read leaves every table as
it was, even when the rollups are behind, stale or missing.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import inspect, text

from core.metrics import Query, page_bundle, refresher
from core.metrics.bundles import PAGES
from core.metrics.rollups import refresh
from core.metrics.source import raw_rows, status
from core.permissions import Actor
from core.settings import business as business_settings
from tests.support.factories import at
from tests.support.worlds import build_random_world

TZ = "America/New_York"  # clocks go forward on 2026-03-08 at 02:00 local (07:00 UTC)
BUILT = at("2026-03-07 13:17")  # the last refresh: 08:17 local, the day before the change of clocks
ASKED = [at("2026-03-09 18:43"),  # two days later, across the change of clocks
         at("2026-03-07 21:59"),  # the same local day, later
         at("2026-03-05 09:11"),  # before the refresh (a pinned past)
         at("2026-03-31 23:58")]  # another month's last minutes


@pytest.fixture
def zoned_world(engine, session):
    business_settings.save(engine, actor=Actor.of("admin", "admin"), business_timezone=TZ)
    session.commit()
    assert refresher.wait(timeout=120)  # the settings change asks for a rebuild in the background
    build_random_world(session, 31, members=30)
    refresh(engine, now=BUILT)
    return engine


def _questions(engine, now):
    today = now.date()
    yield Query.make(engine, start=date(2026, 3, 1), end=today.replace(day=28) if today.month != 3 else date(2026, 4, 1),
                     now=now, granularity="day")
    yield Query.make(engine, start=date(2026, 2, 1), end=date(2026, 4, 1), now=now, granularity="week")
    yield Query.make(engine, start=date(2025, 3, 1), end=date(2026, 4, 1), now=now, granularity="month")
    yield Query.make(engine, start=date(2025, 3, 1), end=date(2026, 4, 1), now=now, granularity="month", currency=None)


def _plain(bundle):
    out = {}
    for slug, r in bundle.metrics.items():
        out[slug] = (r.value, r.by_currency, r.columns("series"), r.columns("breakdown"))
    out["kpis"] = [(k.slug, k.value, k.previous) for k in bundle.kpis]
    return out


@pytest.mark.parametrize("asked", ASKED, ids=lambda m: m.strftime("%m%d-%H%M"))
def test_rollups_plus_tail_equal_the_raw_rows(zoned_world, asked):
    engine = zoned_world
    for q in _questions(engine, asked):
        assert q.tz == TZ
        said = status(engine, q)
        assert said.from_rollups and said.through == BUILT and said.behind == asked - BUILT
        for page in PAGES:
            fast = _plain(page_bundle(engine, page, q))
            with raw_rows():
                slow = _plain(page_bundle(engine, page, q))
            assert fast == slow, (page, q.granularity, q.currency)


def test_the_tail_holds_rows_written_after_the_refresh(zoned_world, session):
    """A payment written after the refresh counts at once (no refresh in between)."""
    from tests.support.factories import make_member, make_payment

    engine = zoned_world
    q = Query.make(engine, start=date(2026, 3, 1), end=date(2026, 3, 10), now=at("2026-03-09 18:43"),
                   granularity="day", currency=None)
    before = page_bundle(engine, "overview", q).metrics["net_revenue"].by_currency.get("USD", 0)
    make_payment(session, member=make_member(session, country="US"), amount=4321, currency="USD",
                 created_at=at("2026-03-09 15:02"))
    session.commit()
    after = page_bundle(engine, "overview", q).metrics["net_revenue"].by_currency.get("USD", 0)
    assert after - before == 4321
    with raw_rows():
        assert page_bundle(engine, "overview", q).metrics["net_revenue"].by_currency["USD"] == after


def _dump(engine) -> dict[str, list]:
    out = {}
    with engine.connect() as conn:
        for table in sorted(inspect(engine).get_table_names()):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            out[table] = sorted(map(repr, rows))
    return out


@pytest.mark.parametrize("rollups", ["behind", "stale", "missing"])
def test_reading_a_page_never_writes(engine, session, rollups):
    build_random_world(session, 32, members=12)
    if rollups != "missing":
        refresh(engine, now=at("2026-02-01 10:00"))
    if rollups == "stale":  # a settings change marked them stale; its rebuild has not run yet
        from core.metrics.rollups import mark_stale

        mark_stale(session)
        session.commit()
    before = _dump(engine)
    now = at("2026-03-09 18:43")
    for q in (Query.make(engine, start=date(2026, 3, 1), end=date(2026, 3, 10), now=now, granularity="day"),
              Query.make(engine, start=date(2025, 3, 1), end=date(2026, 3, 10), now=now)):
        assert status(engine, q).from_rollups is (rollups == "behind")
        for page in PAGES:
            page_bundle(engine, page, q)
    assert not refresher.busy()
    assert _dump(engine) == before


# A day dense with events on both sides of the instants asked: members joining, upgrading and
# cancelling, payments and a refund, early and late in 2026-02-10 (UTC).
EVENTS = ["2026-02-10 01:30", "2026-02-10 04:45", "2026-02-10 09:00", "2026-02-10 17:20", "2026-02-10 21:10",
          "2026-02-10 23:40"]


@pytest.mark.parametrize("asked", [at("2026-02-10 03:05"), at("2026-02-10 20:35")], ids=["early", "late"])
def test_an_earlier_moment_early_or_late_in_its_day(engine, session, asked):
    """Asked about a moment inside a day the rollups hold whole (the previous period of a card):
    early in the day the stored days before it plus its rows up to the moment, late in the day
    the stored days through it less its rows after the moment. Both equal the raw rows."""
    from tests.support.factories import make_change, make_member, make_payment, make_price, make_refund, make_tier

    tier = make_tier(session, code="edge", rank=1)
    price = make_price(session, tier=tier, unit_amount=1000)
    from tests.support.factories import make_subscription

    for i, when in enumerate(EVENTS):
        member = make_member(session)
        sub = make_subscription(session, member=member, price=price, mrr_minor=1000)
        make_change(session, subscription=sub, effective_at=at("2026-01-05 12:00"), mrr_after=1000, kind="created")
        t = at(when)
        if i % 3 == 0:
            make_change(session, subscription=sub, effective_at=t, mrr_before=1000, mrr_after=2500, kind="upgraded")
        elif i % 3 == 1:
            make_change(session, subscription=sub, effective_at=t, mrr_before=1000, mrr_after=0, kind="canceled",
                        to_status="canceled", churn_kind="voluntary")
        late = make_member(session)
        make_change(session, subscription=make_subscription(session, member=late, price=price, mrr_minor=1000),
                    effective_at=t, mrr_after=1000, kind="created")
        paid = make_payment(session, member=member, amount=1000 + i, created_at=t)
        if i % 2:
            make_refund(session, payment=paid, amount=300, created_at=t)
    session.commit()
    refresh(engine, now=at("2026-03-09 12:00"))
    for q in (Query.make(engine, start=date(2026, 2, 1), end=date(2026, 2, 11), now=asked, granularity="day"),
              Query.make(engine, start=date(2026, 2, 1), end=date(2026, 3, 1), now=asked, granularity="month",
                         currency=None)):
        fast = _plain(page_bundle(engine, "overview", q))
        with raw_rows():
            slow = _plain(page_bundle(engine, "overview", q))
        assert fast == slow, q.granularity
        assert fast["mrr"][0] or fast["mrr"][1]  # there is something to compare
