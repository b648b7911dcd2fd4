"""A subscription created through Stripe seconds before a page is asked counts in the page's MRR,
as it does in the command line asked at the same moment.

The dashboard caches its numbers per minute; they used to be computed as of the minute's start,
so a subscription created at 10:20:40 was left out of MRR by a page opened at 10:20:55 (its first
payment, read by the tail, did count), while the command line at 10:20:55 counted both ($9.99
against $19.99). The rollups here are refreshed a second before the change (as the sync's refresh
counts up to a second before the present second), so the member reaches the page through the
tail; and the refresh just after it, as on the server, is checked too.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from core.metrics import Query, compute
from core.metrics.rollups import refresh
from core.settings import business as business_settings
from dashboard import metrics_data
from dashboard.controls import Controls
from tests.support.factories import (
    at,
    make_change,
    make_invoice,
    make_member,
    make_payment,
    make_price,
    make_subscription,
    make_tier,
)

CREATED = at("2026-05-14 10:20:40") + timedelta(microseconds=769_594)  # the mirror's write time
ASKED = at("2026-05-14 10:20:55")


@pytest.fixture
def world(engine, session):
    tier = make_tier(session)
    ann = make_member(session)
    old = make_subscription(session, member=ann, price=make_price(session, tier=tier, unit_amount=999), mrr_minor=999)
    make_change(session, subscription=old, effective_at=at("2026-02-01 00:00"), mrr_after=999, kind="created")
    jo = make_member(session)
    new = make_subscription(session, member=jo, price=make_price(session, tier=tier, unit_amount=1000),
                            mrr_minor=1000)
    make_change(session, subscription=new, effective_at=CREATED, mrr_after=1000, kind="created")
    invoice = make_invoice(session, member=jo, subscription=new, amount=1000, created_at=CREATED.replace(microsecond=0))
    make_payment(session, member=jo, invoice_id=invoice.id, amount=1000, created_at=CREATED.replace(microsecond=0))
    session.commit()
    return engine


@pytest.mark.parametrize("built", [CREATED - timedelta(seconds=2), CREATED + timedelta(seconds=1)],
                         ids=["refreshed-before", "refreshed-after"])
@pytest.mark.parametrize("granularity", ["day", "week", "month"])
def test_the_page_counts_what_the_command_line_counts(world, built, granularity):
    engine = world
    refresh(engine, now=built)
    bs = business_settings.load(engine)
    controls = Controls(start=date(2026, 3, 1), end=date(2026, 5, 14), granularity=granularity)
    q = metrics_data.question(engine, controls, bs, now=ASKED)
    assert q.now_minute < CREATED  # the page's cache minute began before the subscription
    page = metrics_data.bundle(engine, q, "revenue", metrics_data.asked_at(q, ASKED))
    cli = Query.make(engine, start=date(2026, 3, 1), end=date(2026, 5, 15), now=ASKED, granularity=granularity)
    for slug in ("mrr", "paying_members", "net_revenue"):
        assert page.metrics[slug].value == compute(engine, slug, cli).value, slug
    assert page.metrics["mrr"].value == 1999
    assert page.metrics["paying_members"].value == 2
