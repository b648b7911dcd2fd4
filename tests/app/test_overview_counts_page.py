"""The Overview shows the standing counts as they are now: members and paying subscriptions
written after the last metrics refresh are on the page before the next one runs, and its tables
equal the scans of the tables (``tests/support/overview_reference``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

import tests.support.overview_reference as reference
from core.models import Subscription
from tests.support.apptest import app_test, texts
from tests.support.factories import make_member, make_price, make_subscription, make_tier
from tests.support.worlds import build_small_world, create_staff, refresh_rollups


def test_overview_shows_members_and_mrr_written_since_the_last_refresh(database_url, engine):
    with Session(engine, expire_on_commit=False) as s:
        build_small_world(s)
        s.commit()
    create_staff(engine)
    refresh_rollups(engine)
    with Session(engine, expire_on_commit=False) as s:  # written after the refresh
        gold = make_price(s, tier=make_tier(s, code="gold", rank=3), currency="GBP", unit_amount=4200)
        for status in ("active", "active", "paused"):
            make_subscription(s, member=make_member(s), price=gold, status=status, mrr_minor=4200)
        first = s.scalars(select(Subscription).order_by(Subscription.id)).first()
        assert first is not None
        first.status = "canceled"
        s.commit()
    at = app_test(database_url, role="finance")
    at.run(timeout=60)  # the page reads a few tables; a loaded machine can take more than the default 15 s
    assert not at.exception
    frames = [df.value for df in at.dataframe]
    tiers = next(f for f in frames if "Tier" in f.columns).set_index("Tier")
    assert (tiers.loc["gold", "Active"], tiers.loc["gold", "Paused"], tiers.loc["gold", "Total"]) == (2, 1, 3)
    expected = reference.members_by_tier_status(engine)
    assert tiers.loc["all tiers", "Total"] == expected["members"].sum()
    for row in expected.itertuples():
        assert tiers.loc[row.tier, row.status.replace("_", " ").capitalize()] == row.members
    mrr = next(f for f in frames if "MRR" in f.columns)
    assert "£84.00" in set(mrr["MRR"])  # the two active gold memberships
    assert "MRR by currency" in texts(at)
