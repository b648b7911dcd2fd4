"""The demo world is plausible: the ranges documented in docs/demo-data.md hold, and the planted
incidents stand out on their day. Computed from the generated Stripe objects (no database)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest

from core.timeutil import add_months
from demo import incidents
from demo.catalogue import COUNTRIES, HARD_DECLINES, PRICES
from demo.simulate import Story, simulate_member
from demo.world import PROFILES, World

NOW = datetime(2026, 11, 27, tzinfo=UTC)
MEMBERS = 2500


@pytest.fixture(scope="module")
def stories() -> list[Story]:
    world = World(seed=11, members=MEMBERS, now=NOW)
    return [simulate_member(world, i) for i in range(MEMBERS)]


def _day(ts: int) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _first_attempts(stories: list[Story]) -> list[dict]:
    renewal_pis = {entry["payment"]["payment_intent"] for s in stories for inv in s.invoices
                   if inv["billing_reason"] == "subscription_cycle" for entry in inv["payments"]["data"]}
    seen, firsts = set(), []
    for s in stories:
        for ch in s.charges:
            if ch["payment_intent"] in renewal_pis and ch["payment_intent"] not in seen:
                seen.add(ch["payment_intent"])
                firsts.append(ch)
    return firsts


class TestRanges:
    def test_first_attempt_renewal_failure_rate(self, stories: list[Story]) -> None:
        firsts = _first_attempts(stories)
        rate = sum(ch["status"] == "failed" for ch in firsts) / len(firsts)
        assert 0.05 <= rate <= 0.12, rate

    def test_monthly_churn_of_paying_members(self, stories: list[Story]) -> None:
        spells = []  # (paying from, ended or None)
        for s in stories:
            for states in s.subscriptions:
                paying = next((st.at for st in states if st.obj["status"] in ("active", "past_due")), None)
                if paying is None:
                    continue
                last = states[-1]
                ended = last.at if last.obj["status"] == "canceled" else None
                spells.append((paying, ended))
        rates = []
        for k in range(24, 0, -1):
            start = add_months(datetime(NOW.year, NOW.month, 1, tzinfo=UTC), -k)
            end = add_months(start, 1)
            a, b = start.timestamp(), end.timestamp()
            base = [sp for sp in spells if sp[0] < a and (sp[1] is None or sp[1] >= a)]
            churned = [sp for sp in base if sp[1] is not None and sp[1] < b]
            rates.append(len(churned) / len(base))
        assert 0.02 <= statistics.mean(rates) <= 0.08, rates
        assert all(0.005 <= r <= 0.12 for r in rates), rates

    def test_currency_mix(self, stories: list[Story]) -> None:
        country_currency = {c: cur for cur, countries in COUNTRIES.items() for c, _ in countries}
        mix = Counter(s.customer["currency"].upper() if s.customer else country_currency[s.member["country"]]
                      for s in stories)
        for currency, target in (("USD", 0.45), ("EUR", 0.25), ("GBP", 0.15), ("JPY", 0.15)):
            assert abs(mix[currency] / len(stories) - target) <= 0.04, (currency, mix)

    def test_phone_numbers_carry_the_country_calling_code(self, stories: list[Story]) -> None:
        codes = {"US": "+1 ", "CA": "+1 ", "MX": "+52 ", "AU": "+61 ", "DE": "+49 ", "FR": "+33 ", "ES": "+34 ",
                 "IT": "+39 ", "NL": "+31 ", "IE": "+353 ", "GB": "+44 ", "JP": "+81 "}
        phones = [(s.customer["address"]["country"], s.customer["phone"]) for s in stories
                  if s.customer and s.customer.get("phone")]
        assert len(phones) > 100
        wrong = [(c, p) for c, p in phones if not p.startswith(codes[c])]
        assert wrong == []

    def test_free_members_and_zero_decimal_yen(self, stories: list[Story]) -> None:
        free = sum(s.customer is None for s in stories) / len(stories)
        assert 0.25 <= free <= 0.45
        yen = {ch["amount"] for s in stories for ch in s.charges if ch["currency"] == "jpy"}
        assert yen and yen <= {a for (_, _), amounts in PRICES.items() for a in (amounts["JPY"],
                                                                                round(amounts["JPY"] * 0.8))}


class TestLifecycles:
    def test_everything_the_issue_asks_for_happens(self, stories: list[Story]) -> None:
        finals = [states[-1].obj for s in stories for states in s.subscriptions]
        reasons = Counter(f["cancellation_details"]["reason"] for f in finals if f["status"] == "canceled")
        assert reasons["payment_failed"] > 0 and reasons["cancellation_requested"] > 0
        feedback = {f["cancellation_details"]["feedback"] for f in finals if f["status"] == "canceled"}
        assert {"too_expensive", "unused"} <= feedback
        kinds = Counter(st.event_type for s in stories for states in s.subscriptions for st in states)
        assert kinds["customer.subscription.deleted"] > 0
        trials = [states for s in stories for states in s.subscriptions if states[0].obj["status"] == "trialing"]
        converted = sum(any(st.obj["status"] == "active" for st in states) for states in trials)
        assert 0 < converted < len(trials)
        products = [{st.obj["items"]["data"][0]["price"]["product"] for st in states}
                    for s in stories for states in s.subscriptions]
        assert sum(len(p) > 1 for p in products) > 0  # upgrades/downgrades
        assert Counter(f["status"] for f in finals)["past_due"] > 0
        refunds = [(re["amount"], ch["amount"]) for s in stories for re in s.refunds for ch in s.charges
                   if ch["id"] == re["charge"]]
        assert any(a == b for a, b in refunds) and any(a < b for a, b in refunds)
        statuses = Counter(dp["status"] for s in stories for dp in s.disputes)
        assert statuses["won"] > 0 and statuses["lost"] > 0

    def test_retries_follow_the_schedule(self, stories: list[Story]) -> None:
        by_pi: dict[str, list[dict]] = defaultdict(list)
        for s in stories:
            for ch in s.charges:
                by_pi[ch["payment_intent"]].append(ch)
        recovered = 0
        for charges in by_pi.values():
            assert len(charges) <= 4
            span = charges[-1]["created"] - charges[0]["created"]
            assert span <= 15 * 86400
            for a, b in zip(charges, charges[1:], strict=False):
                if a["outcome"]["reason"] in HARD_DECLINES:
                    assert a["payment_method"] != b["payment_method"]  # only a new card is tried
            recovered += len(charges) > 1 and charges[-1]["status"] == "succeeded"
        assert recovered > 0

    def test_cards_expiring_soon(self, stories: list[Story]) -> None:
        soon = add_months(NOW, 2)
        expiring = 0
        for s in stories:
            if s.customer is None:
                continue
            default = s.customer["invoice_settings"]["default_payment_method"]
            card = next(pm["card"] for pm in s.payment_methods if pm["id"] == default)
            live = any(states[-1].obj["status"] in ("active", "past_due", "trialing") for states in s.subscriptions)
            if live and (card["exp_year"], card["exp_month"]) <= (soon.year, soon.month):
                expiring += 1
        assert expiring > 0

    def test_a_live_subscription_is_in_a_period_that_holds_now(self, stories: list[Story]) -> None:
        # Stripe moves a subscription into its new period at the renewal, paid or not: a past-due
        # member in a period that ended days before made the change previews promise charges and
        # refused free days ("no current period end"). Trials and cancellations at the period's end
        # end with it; every other live subscription's period holds the world's now.
        limit = NOW.timestamp()
        live = [states[-1].obj for s in stories for states in s.subscriptions
                if states[-1].obj["status"] in ("active", "past_due", "trialing", "unpaid")]
        past_due = [sub for sub in live if sub["status"] == "past_due"]
        assert len(past_due) > 10
        for sub in live:
            item = sub["items"]["data"][0]
            assert item["current_period_start"] <= limit < item["current_period_end"], (sub["id"], sub["status"])

    def test_nothing_happens_after_now(self, stories: list[Story]) -> None:
        limit = NOW.timestamp()
        assert all(evt[0] <= limit for s in stories for evt in s.events)
        assert all(st.at <= limit for s in stories for states in s.subscriptions for st in states)


class TestIncidents:
    def test_decline_spike_stands_out(self, stories: list[Story]) -> None:
        spike = next(i for i in incidents(NOW) if i.kind == "decline_spike")
        per_day = Counter(_day(ch["created"]) for s in stories for ch in s.charges
                          if ch["status"] == "failed" and ch["outcome"]["reason"] == spike.scope["decline_code"]
                          and ch["payment_method_details"]["card"]["brand"] == spike.scope["card_brand"])
        normal = [per_day.get(NOW.date() - timedelta(days=d), 0) for d in range(40, 100)]
        assert per_day[spike.day] >= max(5, 4 * max(statistics.median(normal), 1)), (per_day[spike.day], normal)

    def test_refund_burst_stands_out(self, stories: list[Story]) -> None:
        burst = next(i for i in incidents(NOW) if i.kind == "refund_burst")
        per_day = Counter(_day(re["created"]) for s in stories for re in s.refunds)
        normal = [per_day.get(NOW.date() - timedelta(days=d), 0) for d in range(40, 100)]
        assert per_day[burst.day] >= max(8, 5 * max(statistics.median(normal), 1)), (per_day[burst.day], normal)
        assert Counter(re["reason"] for s in stories for re in s.refunds
                       if _day(re["created"]) == burst.day).most_common(1)[0][0] == burst.scope["reason"]

    def test_incidents_depend_only_on_now(self) -> None:
        assert incidents(NOW) == incidents(NOW)
        assert [i.day for i in incidents(NOW)] == [date(2026, 11, 15), date(2026, 11, 1)]


@pytest.fixture(scope="module")
def dense() -> list[Story]:
    world = World(seed=11, members=1000, now=NOW, profile=PROFILES["benchmark"])
    return [simulate_member(world, i, events=False) for i in range(world.members)]


class TestBenchmarkProfile:
    """The benchmark world: the same rules with an older, stickier customer base, dense enough
    that 1,000,000 members give about 20 million payment attempts."""

    def test_about_twenty_payment_attempts_per_member(self, dense: list[Story]) -> None:
        per_member = sum(len(s.charges) for s in dense) / len(dense)
        assert 17 <= per_member <= 23, per_member

    def test_still_plausible(self, dense: list[Story]) -> None:
        firsts = _first_attempts(dense)
        assert 0.05 <= sum(ch["status"] == "failed" for ch in firsts) / len(firsts) <= 0.12
        assert 0.04 <= sum(s.customer is None for s in dense) / len(dense) <= 0.15
        currencies = Counter(s.customer["currency"] for s in dense if s.customer)
        assert abs(currencies["usd"] / sum(currencies.values()) - 0.45) <= 0.05, currencies
        first = min(s.customer["created"] for s in dense if s.customer)
        assert first < (NOW - timedelta(days=5 * 365)).timestamp()  # six years of history


class TestApprovalReachable:
    def test_every_currency_has_payments_that_need_a_second_person(self, stories: list[Story]) -> None:
        """With the default limits, a support agent can refund some demo payments only with approval:
        above the approval amount, within support's own limit (issue: approval could never happen)."""
        from core.changes.limits import Limits

        limits = Limits.from_value(None)
        for currency in ("USD", "EUR", "GBP", "JPY"):
            threshold = limits.approval_refund_above[currency]
            cap = limits.max_refund(["support"], currency)
            reachable = [ch["amount"] for s in stories for ch in s.charges
                         if ch["currency"] == currency.lower() and ch["status"] == "succeeded"
                         and threshold < ch["amount"] <= cap]
            assert len(reachable) >= 10, (currency, threshold, cap, len(reachable))
