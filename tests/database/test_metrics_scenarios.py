"""Hand-built worlds with expected values written out by hand (not computed by the code under
test). Each scenario is answered twice: from the rollup tables and from the raw rows."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import date

import pytest

from core.metrics import Query, compute, drill, page_bundle
from core.metrics.rollups import refresh
from core.metrics.source import raw_rows
from core.metrics.subscription_mrr import Item, subscription_mrr
from core.models import Member
from core.permissions import Actor
from core.settings import business as business_settings
from tests.support.factories import (
    at,
    make_card,
    make_change,
    make_dispute,
    make_invoice,
    make_member,
    make_payment,
    make_price,
    make_refund,
    make_subscription,
    make_tier,
)

NOW = at("2026-07-01 00:00")


@pytest.fixture(params=["rollup", "raw"])
def path(request):
    return request.param


def ask(engine, slug, start, end, *, path="rollup", **kw):
    q = Query.make(engine, start=start, end=end, now=kw.pop("now", NOW), **kw)
    refresh(engine, now=q.now)
    with raw_rows() if path == "raw" else nullcontext():
        return compute(engine, slug, q)


def series(result) -> dict:
    return dict(zip(result.series["period"], result.series["value"], strict=True))


@pytest.fixture
def premium(session):
    tier = make_tier(session, code="premium")
    return {"tier": tier, "month": make_price(session, tier=tier, unit_amount=1000),
            "year": make_price(session, tier=tier, unit_amount=12000, interval="year"),
            "big": make_price(session, tier=tier, unit_amount=2500)}


def paid_member(session, price, start, mrr, **kw):
    member = make_member(session, **kw)
    sub = make_subscription(session, member=member, price=price, mrr_minor=mrr)
    make_change(session, subscription=sub, effective_at=start, mrr_after=mrr, kind="created")
    return member, sub


class TestRecurring:
    def test_yearly_plan_is_one_twelfth_a_month(self, engine, session, premium, path):
        mrr = subscription_mrr([Item(12000, 1, "year")], "active")
        paid_member(session, premium["year"], at("2026-01-10 09:00"), mrr)
        session.commit()
        r = ask(engine, "mrr", date(2026, 1, 1), date(2026, 4, 1), path=path)
        assert r.value == 1000  # $120.00 a year = $10.00 a month
        assert series(r) == {date(2026, 1, 1): 1000, date(2026, 2, 1): 1000, date(2026, 3, 1): 1000}
        assert ask(engine, "arr", date(2026, 1, 1), date(2026, 4, 1), path=path).value == 12000

    def test_upgrade_mid_month_is_expansion_then_downgrade_is_contraction(self, engine, session, premium, path):
        _, sub = paid_member(session, premium["month"], at("2026-01-05 00:00"), 1000)
        make_change(session, subscription=sub, effective_at=at("2026-03-15 12:00"), mrr_before=1000, mrr_after=2500,
                    kind="upgraded", to_price=premium["big"])
        make_change(session, subscription=sub, effective_at=at("2026-05-10 12:00"), mrr_before=2500, mrr_after=1000,
                    kind="downgraded", to_price=premium["month"])
        session.commit()
        new = ask(engine, "mrr_new", date(2026, 1, 1), date(2026, 7, 1), path=path)
        assert series(new)[date(2026, 1, 1)] == 1000 and new.value == 1000
        exp = ask(engine, "mrr_expansion", date(2026, 1, 1), date(2026, 7, 1), path=path)
        assert series(exp) == {date(2026, 1, 1): 0, date(2026, 2, 1): 0, date(2026, 3, 1): 1500,
                               date(2026, 4, 1): 0, date(2026, 5, 1): 0, date(2026, 6, 1): 0}
        con = ask(engine, "mrr_contraction", date(2026, 1, 1), date(2026, 7, 1), path=path)
        assert series(con)[date(2026, 5, 1)] == 1500 and con.value == 1500
        mrr = ask(engine, "mrr", date(2026, 1, 1), date(2026, 7, 1), path=path)
        assert series(mrr)[date(2026, 3, 1)] == 2500 and mrr.value == 1000
        wf = ask(engine, "mrr_movements", date(2026, 3, 1), date(2026, 4, 1), path=path)
        assert dict(zip(wf.breakdown["key"], wf.breakdown["value"], strict=True)) == {
            "start": 1000, "new": 0, "reactivation": 0, "expansion": 1500, "contraction": 0, "churn": 0, "end": 2500}

    def test_cancel_then_return_is_churn_then_reactivation(self, engine, session, premium, path):
        _, sub = paid_member(session, premium["month"], at("2026-01-05 00:00"), 1000)
        make_change(session, subscription=sub, effective_at=at("2026-02-10 00:00"), mrr_before=1000, mrr_after=0,
                    kind="canceled", to_status="canceled", churn_kind="voluntary")
        make_change(session, subscription=sub, effective_at=at("2026-04-05 00:00"), mrr_after=1000,
                    kind="reactivated", from_status="canceled", to_status="active")
        session.commit()
        churn = ask(engine, "mrr_churn", date(2026, 1, 1), date(2026, 7, 1), path=path)
        assert series(churn)[date(2026, 2, 1)] == 1000 and churn.value == 1000
        react = ask(engine, "mrr_reactivation", date(2026, 1, 1), date(2026, 7, 1), path=path)
        assert series(react)[date(2026, 4, 1)] == 1000 and react.value == 1000
        assert ask(engine, "mrr_new", date(2026, 4, 1), date(2026, 5, 1), path=path).value == 0
        rate = ask(engine, "voluntary_churn_rate", date(2026, 2, 1), date(2026, 3, 1), path=path)
        assert rate.value == 1.0
        rows = drill(engine, "mrr_reactivation", Query.make(engine, start=date(2026, 4, 1), end=date(2026, 5, 1),
                                                            now=NOW))
        assert list(rows["movement"]) == ["reactivation"] and rows["email"].iloc[0].endswith("@example.com")

    def test_jpy_member_is_converted_not_added(self, engine, session, path):
        tier = make_tier(session, code="premium")
        yen = make_price(session, tier=tier, currency="JPY", unit_amount=1200)
        usd = make_price(session, tier=tier, unit_amount=1000)
        paid_member(session, yen, at("2026-01-05 00:00"), 1200, country="JP")
        paid_member(session, usd, at("2026-01-05 00:00"), 1000)
        session.commit()
        r = ask(engine, "mrr", date(2026, 6, 1), date(2026, 7, 1), path=path)
        # ¥1,200 at the seeded 2026 rate of $0.0065 per yen = $7.80; plus $10.00.
        assert r.value == 1780
        assert r.by_currency == {"JPY": 1200, "USD": 1000}
        per = ask(engine, "mrr", date(2026, 6, 1), date(2026, 7, 1), path=path, currency=None)
        assert per.value is None and per.by_currency == {"JPY": 1200, "USD": 1000}
        assert set(per.series["currency"]) == {"JPY", "USD"}


class TestTrials:
    def test_one_converts_one_does_not(self, engine, session, premium, path):
        for end, status in (("2026-03-15 00:00", "paid"), ("2026-03-20 00:00", "open"), ("2026-07-10 00:00", "paid")):
            member = make_member(session)
            sub = make_subscription(session, member=member, price=premium["month"], status="active",
                                    trial_start=at("2026-03-01 00:00"), trial_end=at(end))
            make_invoice(session, member=member, subscription=sub, amount=0, created_at=at("2026-03-01 00:00"),
                         billing_reason="subscription_create")
            make_invoice(session, member=member, subscription=sub, amount=1000, status=status, created_at=at(end))
        session.commit()
        r = ask(engine, "trial_conversion", date(2026, 1, 1), date(2026, 7, 1), path=path)
        assert r.value == 0.5  # the trial ending on 10 July has not ended yet
        assert series(r)[date(2026, 3, 1)] == 0.5


class TestCash:
    def test_refund_and_lost_dispute_by_their_own_dates(self, engine, session, path):
        member = make_member(session)
        pay = make_payment(session, member=member, amount=1000, created_at=at("2026-03-03 10:00"))
        make_refund(session, payment=pay, amount=400, created_at=at("2026-04-02 10:00"))
        disputed = make_payment(session, member=member, amount=2000, created_at=at("2026-02-05 10:00"))
        lost = make_dispute(session, payment=disputed, status="lost", created_at=at("2026-02-20 10:00"))
        lost.closed_at = at("2026-03-20 10:00")
        won_pay = make_payment(session, member=member, amount=500, created_at=at("2026-02-06 10:00"))
        won = make_dispute(session, payment=won_pay, status="won")
        won.closed_at = at("2026-03-21 10:00")
        make_payment(session, member=member, amount=700, status="failed", created_at=at("2026-03-04 10:00"))
        session.commit()
        start, end = date(2026, 2, 1), date(2026, 5, 1)
        gross = ask(engine, "gross_revenue", start, end, path=path)
        assert series(gross) == {date(2026, 2, 1): 2500, date(2026, 3, 1): 1000, date(2026, 4, 1): 0}
        refunds = ask(engine, "refunds", start, end, path=path)
        assert series(refunds) == {date(2026, 2, 1): 0, date(2026, 3, 1): 0, date(2026, 4, 1): 400}
        disputes = ask(engine, "disputes_lost", start, end, path=path)
        assert disputes.value == 2000 and series(disputes)[date(2026, 3, 1)] == 2000
        net = ask(engine, "net_revenue", start, end, path=path)
        assert series(net) == {date(2026, 2, 1): 2500, date(2026, 3, 1): -1000, date(2026, 4, 1): -400}
        assert net.value == 1100

    def test_this_month_so_far(self, engine, session, path):
        """The dashboard's default range runs through today: this month's bucket holds the month
        so far."""
        member = make_member(session)
        make_payment(session, member=member, amount=1000, created_at=at("2026-05-20 10:00"))
        make_payment(session, member=member, amount=1500, created_at=at("2026-06-03 10:00"))
        make_payment(session, member=member, amount=800, created_at=at("2026-06-12 18:00"))
        make_payment(session, member=member, amount=800, status="failed", decline_code="expired_card",
                     card_brand="visa", created_at=at("2026-06-12 09:00"))
        session.commit()
        now = at("2026-06-14 08:00")
        start, end = date(2026, 5, 1), date(2026, 6, 15)  # through today, as the dashboard asks
        gross = ask(engine, "gross_revenue", start, end, path=path, now=now)
        assert series(gross) == {date(2026, 5, 1): 1000, date(2026, 6, 1): 2300}
        assert gross.value == 3300
        codes = ask(engine, "decline_codes", start, end, path=path, now=now)
        assert codes.value == 1 and codes.breakdown["key"].tolist() == ["expired_card"]


class TestPastDueGrace:
    def _world(self, session, premium):
        subs = []
        for since in ("2026-06-20 00:00", "2026-06-01 00:00"):  # 11 and 30 days before NOW
            _, sub = paid_member(session, premium["month"], at("2026-01-05 00:00"), 1000)
            sub.status, sub.past_due_since = "past_due", at(since)
            make_change(session, subscription=sub, effective_at=at(since), mrr_before=1000, mrr_after=1000,
                        kind="past_due", from_status="active", to_status="past_due")
            subs.append(sub)
        session.commit()
        return subs

    def test_without_grace_days_past_due_counts(self, engine, session, premium, path):
        self._world(session, premium)
        assert ask(engine, "mrr", date(2026, 6, 1), date(2026, 7, 1), path=path).value == 2000
        assert ask(engine, "revenue_at_risk", date(2026, 6, 1), date(2026, 7, 1), path=path).value == 2000

    def test_beyond_grace_days_is_involuntary_churn(self, engine, session, premium, path):
        self._world(session, premium)
        business_settings.save(engine, actor=Actor.of("admin", "admin"), past_due_grace_days=14)
        mrr = ask(engine, "mrr", date(2026, 6, 1), date(2026, 7, 1), path=path)
        assert mrr.value == 1000  # the member 30 days past due stopped counting on 15 June
        inv = ask(engine, "involuntary_churn_rate", date(2026, 6, 1), date(2026, 7, 1), path=path)
        assert inv.value == 0.5
        assert ask(engine, "voluntary_churn_rate", date(2026, 6, 1), date(2026, 7, 1), path=path).value == 0.0
        risk = ask(engine, "revenue_at_risk", date(2026, 6, 1), date(2026, 7, 1), path=path)
        assert risk.value == 1000  # only the one still inside the grace days

    def test_worklist_shows_days_past_due_and_decline(self, engine, session, premium):
        subs = self._world(session, premium)
        member = session.get(Member, subs[0].member_id)
        inv = make_invoice(session, member=member, subscription=subs[0], status="open", amount=1000,
                           created_at=at("2026-06-20 00:00"), amount_remaining=1000,
                           next_payment_attempt_at=at("2026-07-03 00:00"))
        make_payment(session, member=member, invoice_id=inv.id, status="failed", decline_code="insufficient_funds",
                     created_at=at("2026-06-20 00:00"))
        session.commit()
        b = page_bundle(engine, "failed_payments", Query.make(engine, start=date(2026, 6, 1), end=date(2026, 7, 1),
                                                               now=NOW))
        worklist = b.tables["past_due"].set_index("subscription_id")
        assert worklist.loc[subs[0].id, "days_past_due"] == 11
        assert worklist.loc[subs[1].id, "days_past_due"] == 30
        assert worklist.loc[subs[0].id, "decline_code"] == "insufficient_funds"
        assert worklist.loc[subs[0].id, "amount_due_minor"] == 1000
        assert worklist.loc[subs[0].id, "next_retry_at"] == at("2026-07-03 00:00")


class TestCards:
    def test_card_expiring_before_renewal_is_at_risk(self, engine, session, premium):
        member, sub = paid_member(session, premium["year"], at("2026-01-05 00:00"), 1000)
        sub.default_payment_method_id = make_card(session, member=member, exp_month=11, exp_year=2026).id
        sub.current_period_end = at("2027-01-05 00:00")
        other, sub2 = paid_member(session, premium["month"], at("2026-01-05 00:00"), 1000)
        sub2.default_payment_method_id = make_card(session, member=other, exp_month=7, exp_year=2026).id
        sub2.current_period_end = at("2026-07-05 00:00")  # valid through 31 July: renews first
        session.commit()
        q = Query.make(engine, start=date(2026, 6, 1), end=date(2026, 7, 1), now=NOW)
        cards = page_bundle(engine, "failed_payments", q).tables["expiring_cards"]
        assert list(cards["subscription_id"]) == [sub.id]
        assert compute(engine, "revenue_at_risk", q).value == 1000


class TestDaylightSaving:
    def test_berlin_month_boundaries_cross_dst(self, engine, session, premium, path):
        member = make_member(session)
        # 22:30 UTC on 31 March is 00:30 on 1 April in Berlin (CEST, UTC+2).
        make_payment(session, member=member, amount=100, created_at=at("2026-03-31 22:30"))
        # 23:30 UTC on 28 February is 00:30 on 1 March in Berlin (CET, UTC+1).
        make_payment(session, member=member, amount=10, created_at=at("2026-02-28 23:30"))
        _, sub = paid_member(session, premium["month"], at("2026-03-31 22:30"), 1000)
        session.commit()
        berlin = ask(engine, "gross_revenue", date(2026, 2, 1), date(2026, 5, 1), path=path, tz="Europe/Berlin")
        assert series(berlin) == {date(2026, 2, 1): 0, date(2026, 3, 1): 10, date(2026, 4, 1): 100}
        utc = ask(engine, "gross_revenue", date(2026, 2, 1), date(2026, 5, 1), path=path, tz="UTC")
        assert series(utc) == {date(2026, 2, 1): 10, date(2026, 3, 1): 100, date(2026, 4, 1): 0}
        new_berlin = ask(engine, "mrr_new", date(2026, 3, 1), date(2026, 5, 1), path=path, tz="Europe/Berlin")
        assert series(new_berlin) == {date(2026, 3, 1): 0, date(2026, 4, 1): 1000}
        assert series(ask(engine, "mrr_new", date(2026, 3, 1), date(2026, 5, 1), path=path))[date(2026, 3, 1)] == 1000
        del sub

    def test_business_zone_rollups_follow_the_setting(self, engine, session):
        member = make_member(session)
        make_payment(session, member=member, amount=100, created_at=at("2026-03-31 22:30"))
        session.commit()
        business_settings.save(engine, actor=Actor.of("admin", "admin"), business_timezone="Europe/Berlin")
        q = Query.make(engine, start=date(2026, 3, 1), end=date(2026, 5, 1), now=NOW)
        assert q.tz == "Europe/Berlin"
        refresh(engine, now=NOW)
        assert series(compute(engine, "gross_revenue", q)) == {date(2026, 3, 1): 0, date(2026, 4, 1): 100}


class TestLongWorklists:
    def test_a_page_lists_the_longest_past_due_and_counts_the_rest(self, engine, session, premium):
        from datetime import timedelta

        from core.metrics import worklists
        from core.metrics.bundles import WORKLIST_ROWS

        n = WORKLIST_ROWS + 3
        for i in range(n):
            member = make_member(session)
            make_subscription(session, member=member, price=premium["month"], status="past_due", mrr_minor=1000,
                              past_due_since=at("2026-06-01 00:00") + timedelta(minutes=i))
        session.commit()
        q = Query.make(engine, start=date(2026, 6, 1), end=date(2026, 7, 1), now=NOW)
        b = page_bundle(engine, "failed_payments", q)
        listed = b.tables["past_due"]
        assert len(listed) == WORKLIST_ROWS
        assert b.row_counts == {"past_due": n, "expiring_cards": 0}
        assert listed["past_due_since"].is_monotonic_increasing  # the longest past due first
        assert listed["past_due_since"].iloc[0] == at("2026-06-01 00:00")
        assert len(worklists.past_due(engine, q, limit=None)) == n  # what the download holds
