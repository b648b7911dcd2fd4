"""Every Stripe-backed action end to end: the service against the sandbox over HTTP with the real
client, then both sides checked (our rows and Stripe's object)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from core.changes import REASONS, Actor, ChangeInput, ChangeRefused, decide, submit
from core.changes import preview as preview_change
from core.db import session_scope
from core.models import AuditEntry, ChangeRequest, MembershipChange, Payment, Refund, Subscription
from tests.support.changes_world import build, mirror, version

OPERATOR = Actor.operator("test")  # syncs act as a named operator

SUPPORT = Actor.of("sam", ["support"])
MANAGER = Actor.of("mia", ["manager"])
FINANCE = Actor.of("fin", ["finance"])


def _change(engine, world, action, params, *, reason=None, comment="customer asked"):
    return ChangeInput(action, world.member_id, version(engine, world.member_id), reason or REASONS[action][0],
                       comment, params)


def _sub(engine, world) -> Subscription:
    with session_scope(engine) as s:
        return s.scalar(select(Subscription).where(Subscription.stripe_subscription_id == world.subscription))


@pytest.fixture
def world(engine, stripe_env):
    return build(engine, stripe_env.client)


class TestRefund:
    def test_partial_then_rest(self, engine, stripe_env, world):
        out = submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": "2.50"}),
                     SUPPORT, stripe=stripe_env.client)
        assert out.status == "applied"
        charge = stripe_env.client.v1.charges.retrieve(world.charge)
        assert charge.amount_refunded == 250
        with session_scope(engine) as s:
            assert s.get(Payment, world.payment_id).amount_refunded == 250
            refund = s.scalars(select(Refund)).one()
            assert refund.amount == 250 and refund.stripe_refund_id == out.result["detail"]["stripe_refund_id"]
            entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "change.refund")).one()
            assert entry.stripe_ids["refund"] == refund.stripe_refund_id
        p = preview_change(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "full": True}),
                           SUPPORT, stripe=stripe_env.client)
        assert p.amount_minor == 750 and p.amount_kind == "refund"

    def test_a_confirmed_refund_reads_the_charge_once(self, engine, stripe_env, world):
        # The plan reads the charge (the refundable rest); the refund comes back with the charge as
        # it is after the refund. Counted on the sandbox's request log, this charge's requests only.
        mine = f"/v1/charges/{world.charge}"
        for amount in ("1.00", "2.00"):
            stripe_env.proc.clear_requests()
            change = _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": amount})
            out = submit(engine, change, SUPPORT, stripe=stripe_env.client)
            assert out.status == "applied"
            asked = [(r["method"], r["path"]) for r in stripe_env.proc.requests()]
            assert asked.count(("GET", mine)) == 1, asked
            assert [r for r in asked if r[1] == "/v1/refunds"] == [("POST", "/v1/refunds")], asked
        with session_scope(engine) as s:
            assert s.get(Payment, world.payment_id).amount_refunded == 300
            assert s.scalar(select(func.count()).select_from(Refund)) == 2

    def test_reasons_reach_stripe_as_its_own_enum(self, engine, stripe_env, world):
        # Stripe's three reasons pass through; ours (goodwill, an outage...) are the member's request.
        # Each a different amount: the same amount again would be asked about as a repeat.
        for amount, reason, expected in (("1.00", "duplicate", "duplicate"), ("1.01", "goodwill", "requested_by_customer"),
                                         ("1.02", "fraudulent", "fraudulent"),
                                         ("1.03", "service_outage", "requested_by_customer")):
            out = submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": amount},
                                         reason=reason), SUPPORT, stripe=stripe_env.client)
            assert out.status == "applied"
            refund_id = out.result["detail"]["stripe_refund_id"]
            assert stripe_env.client.v1.refunds.retrieve(refund_id).reason == expected
            with session_scope(engine) as s:
                assert s.scalar(select(Refund.reason).where(Refund.stripe_refund_id == refund_id)) == expected
        # The member page says the reason staff gave, and who ("goodwill" came back from Stripe as
        # "requested_by_customer" and was shown so).
        from core.members import member_view

        shown = member_view(engine, world.member_id).refunds
        assert sorted(zip(shown["reason"], shown["made_by"], strict=True)) == sorted(
            (r, "sam") for r in ("duplicate", "goodwill", "fraudulent", "service_outage"))

    def test_a_second_like_refund_asks_and_names_the_first(self, engine, stripe_env, world):
        from core.changes import RepeatSuspected

        first = submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": "1.00"}),
                       SUPPORT, stripe=stripe_env.client)
        assert first.status == "applied" and first.message == "Done."
        # The form filled in again at the member's new version: not a replay, a second refund.
        again = _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": "1.00"})
        for attempt in (preview_change, submit):
            with pytest.raises(RepeatSuspected) as caught:
                attempt(engine, again, Actor.of("tom", ["support"]), stripe=stripe_env.client)
            sentence = str(caught.value)
            assert "$1.00" in sentence and "by sam" in sentence and "UTC" in sentence, sentence
            assert caught.value.earlier["request_id"] == first.request_id
        assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 100
        # A different amount is not "like" the first; the same amount goes ahead once confirmed.
        preview_change(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": "2"}),
                       SUPPORT, stripe=stripe_env.client)
        confirmed = _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": "1.00",
                                                      "repeat_of": first.request_id})
        assert submit(engine, confirmed, SUPPORT, stripe=stripe_env.client).status == "applied"
        assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 200
        # The same confirmed form submitted twice (a double click) is answered, not made again.
        replay = submit(engine, confirmed, SUPPORT, stripe=stripe_env.client)
        assert replay.message == "This change was already made; it was not made twice."
        assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 200

    def test_bad_amounts_write_nothing(self, engine, stripe_env, world):
        cases = [({"amount": "20.00"}, "At most \\$10.00"), ({"amount": "-1"}, "more than zero"),
                 ({"amount": "1.234"}, "2 decimal places"), ({"amount": "1", "currency": "EUR"}, "made in USD"),
                 ({"amount": "lots"}, "not an amount"), ({"amount": 0}, "more than zero")]
        for params, sentence in cases:
            with pytest.raises(ChangeRefused, match=sentence):
                submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id} | params), SUPPORT,
                       stripe=stripe_env.client)
        assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 0
        with session_scope(engine) as s:
            assert s.scalar(select(func.count()).select_from(ChangeRequest)) == 0

    def test_large_refund_waits_for_a_second_person(self, engine, stripe_env, world):
        from core.changes import load_limits, save_limits

        with session_scope(engine) as s:
            limits = load_limits(s)
        limits.approval_refund_above["USD"] = 500
        save_limits(engine, actor=Actor.of("root", ["admin"]), limits=limits)
        # support may refund up to $50 by default, but above $5 a second person must approve
        out = submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "full": True}),
                     SUPPORT, stripe=stripe_env.client)
        assert out.status == "pending_approval"
        assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 0
        with pytest.raises(ChangeRefused, match="role"):
            decide(engine, out.request_id, SUPPORT, approve=True, note="ok", stripe=stripe_env.client)
        with pytest.raises(ChangeRefused, match="second person"):
            decide(engine, out.request_id, Actor.of("sam", ["support", "manager"]), approve=True, note="ok",
                   stripe=stripe_env.client)
        done = decide(engine, out.request_id, MANAGER, approve=True, note="checked the invoice",
                      stripe=stripe_env.client)
        assert done.status == "applied"
        assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 1000
        with session_scope(engine) as s:
            entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "change.refund")).one()
            assert entry.approved_by == "mia" and entry.actor == "sam"

    def test_rejected_request_changes_nothing(self, engine, stripe_env, world):
        from core.changes import load_limits, save_limits

        with session_scope(engine) as s:
            limits = load_limits(s)
        limits.approval_refund_above["USD"] = 100
        save_limits(engine, actor=Actor.of("root", ["admin"]), limits=limits)
        out = submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": 500}),
                     SUPPORT, stripe=stripe_env.client)
        rejected = decide(engine, out.request_id, FINANCE, approve=False, note="not our fault")
        assert rejected.status == "rejected"
        assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 0

    def test_support_cannot_refund_above_their_limit(self, engine, stripe_env, world):
        from core.changes import load_limits, save_limits

        with session_scope(engine) as s:
            limits = load_limits(s)
        limits.refund_max["support"] = {"USD": 300}
        save_limits(engine, actor=Actor.of("root", ["admin"]), limits=limits)
        with pytest.raises(ChangeRefused, match="manager or finance"):
            submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": "5"}),
                   SUPPORT, stripe=stripe_env.client)
        assert submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": "5"}),
                      FINANCE, stripe=stripe_env.client).status == "applied"


class TestLifecycle:
    def test_pause_then_resume(self, engine, stripe_env, world):
        p = preview_change(engine, _change(engine, world, "pause", {"behavior": "void"}), SUPPORT,
                           stripe=stripe_env.client)
        assert (p.mrr_before_minor, p.mrr_after_minor) == (1000, 0)
        submit(engine, _change(engine, world, "pause", {"behavior": "void"}), SUPPORT, stripe=stripe_env.client)
        assert stripe_env.client.v1.subscriptions.retrieve(world.subscription).pause_collection.behavior == "void"
        sub = _sub(engine, world)
        assert sub.pause_behavior == "void" and sub.mrr_minor == 0
        with pytest.raises(ChangeRefused, match="already paused"):
            submit(engine, _change(engine, world, "pause", {"behavior": "void"}), SUPPORT, stripe=stripe_env.client)
        submit(engine, _change(engine, world, "resume", {}), SUPPORT, stripe=stripe_env.client)
        assert not stripe_env.client.v1.subscriptions.retrieve(world.subscription).pause_collection
        assert _sub(engine, world).mrr_minor == 1000
        with session_scope(engine) as s:
            kinds = [(c.kind, c.actor) for c in s.scalars(select(MembershipChange).where(
                MembershipChange.source == "staff").order_by(MembershipChange.id))]
        assert kinds == [("paused", "sam"), ("resumed", "sam")]

    def test_cancel_at_period_end_then_undo(self, engine, stripe_env, world):
        submit(engine, _change(engine, world, "cancel", {"when": "period_end"}), SUPPORT, stripe=stripe_env.client)
        assert stripe_env.client.v1.subscriptions.retrieve(world.subscription).cancel_at_period_end is True
        assert _sub(engine, world).cancel_at_period_end
        submit(engine, _change(engine, world, "uncancel", {}), SUPPORT, stripe=stripe_env.client)
        assert stripe_env.client.v1.subscriptions.retrieve(world.subscription).cancel_at_period_end is False
        assert not _sub(engine, world).cancel_at_period_end

    def test_cancel_now_then_reactivate(self, engine, stripe_env, world):
        submit(engine, _change(engine, world, "cancel", {"when": "now"}, reason="too_expensive"), SUPPORT,
               stripe=stripe_env.client)
        remote = stripe_env.client.v1.subscriptions.retrieve(world.subscription)
        assert remote.status == "canceled"
        sub = _sub(engine, world)
        assert sub.status == "canceled" and sub.mrr_minor == 0
        with pytest.raises(ChangeRefused, match="nothing to pause|canceled"):
            submit(engine, _change(engine, world, "pause", {}), SUPPORT, stripe=stripe_env.client)
        out = submit(engine, _change(engine, world, "reactivate", {"price_id": world.prices["platinum_monthly"]}),
                     SUPPORT, stripe=stripe_env.client)
        assert out.status == "applied"
        subs = stripe_env.client.v1.subscriptions.list({"customer": world.customer, "status": "active"}).data
        assert len(subs) == 1 and subs[0].items.data[0].price.id == world.stripe_prices["platinum_monthly"]
        with session_scope(engine) as s:
            live = s.scalars(select(Subscription).where(Subscription.status == "active")).one()
            assert live.stripe_subscription_id == subs[0].id and live.mrr_minor == 3000

    def test_a_reactivation_paid_partly_by_credit_says_so(self, engine, stripe_env, world):
        # Up then down leaves the unused time as credit; the new membership's first invoice is paid
        # from it first, and the preview says how much is charged.
        for price in ("platinum_monthly", "premium_monthly"):
            params = {"price_id": world.prices[price], "when": "now"}
            p = preview_change(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
            submit(engine, _change(engine, world, "change_price", {**params, **p.pinned}), FINANCE,
                   stripe=stripe_env.client)
        credit = -stripe_env.client.v1.customers.retrieve(world.customer).balance
        assert 0 < credit < 3000
        submit(engine, _change(engine, world, "cancel", {"when": "now"}), SUPPORT, stripe=stripe_env.client)
        params = {"price_id": world.prices["platinum_monthly"]}
        p = preview_change(engine, _change(engine, world, "reactivate", params), SUPPORT, stripe=stripe_env.client)
        assert p.amount_minor == 3000 - credit
        assert any(line.startswith("The member's credit balance pays") for line in p.summary), p.summary
        assert submit(engine, _change(engine, world, "reactivate", params), SUPPORT,
                      stripe=stripe_env.client).status == "applied"
        first = stripe_env.client.v1.invoices.list({"customer": world.customer, "limit": 1}).data[0]
        assert (first.billing_reason, first.amount_due) == ("subscription_create", p.amount_minor)

    def test_extend_active_period(self, engine, stripe_env, world):
        before = _sub(engine, world).current_period_end
        p = preview_change(engine, _change(engine, world, "extend", {"days": 10}), SUPPORT, stripe=stripe_env.client)
        assert (p.new_period_end - before).days == 10
        submit(engine, _change(engine, world, "extend", {"days": 10}), SUPPORT, stripe=stripe_env.client)
        remote = stripe_env.client.v1.subscriptions.retrieve(world.subscription)
        assert remote.trial_end == int(p.new_period_end.timestamp())
        sub = _sub(engine, world)
        assert sub.status == "trialing" and sub.trial_end == p.new_period_end
        with pytest.raises(ChangeRefused, match="at most 30"):
            submit(engine, _change(engine, world, "extend", {"days": 31}), SUPPORT, stripe=stripe_env.client)


    def test_free_days_on_a_period_whose_renewal_has_not_reached_us_say_so(self, engine, stripe_env, world):
        # The header showed the period's end and the form said there was "no current period end".
        with session_scope(engine) as s:
            sub = s.scalar(select(Subscription).where(Subscription.stripe_subscription_id == world.subscription))
            sub.current_period_end = ended = sub.current_period_start  # the renewal we have not heard of
        with pytest.raises(ChangeRefused, match=f"period ended on {ended:%Y-%m-%d} and its renewal has not reached"):
            preview_change(engine, _change(engine, world, "extend", {"days": 3}), SUPPORT, stripe=stripe_env.client)


class TestTrialsAndYen:
    def test_extend_a_trial(self, engine, stripe_env):
        w = build(engine, stripe_env.client, trial_days=7, email="tia@example.com")
        before = stripe_env.client.v1.subscriptions.retrieve(w.subscription).trial_end
        out = submit(engine, _change(engine, w, "extend", {"days": 5}), SUPPORT, stripe=stripe_env.client)
        assert out.status == "applied"
        assert stripe_env.client.v1.subscriptions.retrieve(w.subscription).trial_end == before + 5 * 86400
        sub = _sub(engine, w)
        assert sub.status == "trialing" and int(sub.trial_end.timestamp()) == before + 5 * 86400

    def test_refund_in_yen_takes_whole_units(self, engine, stripe_env):
        w = build(engine, stripe_env.client, currency="jpy", email="yui@example.com")
        with pytest.raises(ChangeRefused, match="whole units"):
            submit(engine, _change(engine, w, "refund", {"payment_id": w.payment_id, "amount": "12.5"}), SUPPORT,
                   stripe=stripe_env.client)
        out = submit(engine, _change(engine, w, "refund", {"payment_id": w.payment_id, "amount": "¥300"}), SUPPORT,
                     stripe=stripe_env.client)
        assert out.status == "applied"
        assert stripe_env.client.v1.charges.retrieve(w.charge).amount_refunded == 300
        with session_scope(engine) as s:
            assert s.get(Payment, w.payment_id).amount_refunded == 300


class TestTierChange:
    def test_upgrade_now_charges_the_previewed_proration(self, engine, stripe_env, world):
        params = {"price_id": world.prices["platinum_monthly"], "when": "now"}
        p = preview_change(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
        assert p.amount_kind == "charge" and 0 < p.amount_minor <= 2000
        assert (p.mrr_before_minor, p.mrr_after_minor) == (1000, 3000)
        out = submit(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
        assert out.status == "applied"
        remote = stripe_env.client.v1.subscriptions.retrieve(world.subscription)
        assert remote["items"].data[0].price.id == world.stripe_prices["platinum_monthly"]
        sub = _sub(engine, world)
        assert sub.price_id == world.prices["platinum_monthly"] and sub.mrr_minor == 3000
        with session_scope(engine) as s:
            mc = s.scalars(select(MembershipChange).where(MembershipChange.source == "staff")).one()
            assert (mc.kind, mc.mrr_before_minor, mc.mrr_after_minor, mc.actor) == ("upgraded", 1000, 3000, "fin")

    def test_at_period_end_charges_nothing_now(self, engine, stripe_env, world):
        params = {"price_id": world.prices["platinum_monthly"], "when": "period_end"}
        p = preview_change(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
        assert p.amount_minor == 0
        # The tier changes now, only the price waits for the renewal: the preview says so.
        assert p.summary[0].startswith("Switches to Platinum") and "now (the new tier from this moment)" in p.summary[0]
        assert not any("not credited" in line for line in p.summary)  # an upgrade loses the member nothing
        submit(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
        invoices = stripe_env.client.v1.invoices.list({"customer": world.customer}).data
        assert len(invoices) == 1  # only the first one
        # Back down the same way: the days paid at Platinum are not credited, and the preview says so.
        down = {"price_id": world.prices["premium_monthly"], "when": "period_end"}
        p = preview_change(engine, _change(engine, world, "change_price", down), FINANCE, stripe=stripe_env.client)
        assert "The days left of this period at $30.00/month are not credited (choose Now, prorated to credit them)." in p.summary

    def test_a_change_of_interval_starts_a_new_period_now(self, engine, stripe_env, world):
        # Stripe starts a new period at once on a change of interval and bills it then: the preview
        # said "New period end" of the old monthly period, and "from the next renewal" charged now.
        later = {"price_id": world.prices["premium_yearly"], "when": "period_end"}
        with pytest.raises(ChangeRefused, match="from monthly to yearly billing starts a new period at once"):
            preview_change(engine, _change(engine, world, "change_price", later), FINANCE, stripe=stripe_env.client)
        params = {"price_id": world.prices["premium_yearly"], "when": "now"}
        asked_at = datetime.now(UTC)
        p = preview_change(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
        old_end = _sub(engine, world).current_period_end
        assert (p.new_period_end - old_end).days > 300
        assert any(line.startswith("A new yearly period starts now and ends on") for line in p.summary)
        # Confirmed as the form confirms it: with the moment the preview pinned, so Stripe prorates
        # at that moment. The new period itself starts when Stripe applies the change, a moment later.
        assert p.pinned.keys() == {"proration_date"}
        assert submit(engine, _change(engine, world, "change_price", {**params, **p.pinned}), FINANCE,
                      stripe=stripe_env.client).status == "applied"
        waited = datetime.now(UTC) - asked_at + timedelta(seconds=2)  # Stripe's times are whole seconds
        assert timedelta(0) <= _sub(engine, world).current_period_end - p.new_period_end <= waited
        # Charged now: the year, less the unused month's credit, as Stripe's invoice says.
        charged = stripe_env.client.v1.invoices.list({"customer": world.customer, "limit": 1}).data[0]
        assert (p.amount_kind, p.amount_minor) == ("charge", charged.total) and 9000 <= charged.total < 10000

    def test_a_member_s_credit_pays_first_and_the_preview_says_so(self, engine, stripe_env, world):
        # Up, down (the unused time becomes credit), up again: the preview said "$20.00 charged now"
        # and Stripe, paying the proration from the credit first, charged nothing.
        def change(price: str):
            params = {"price_id": world.prices[price], "when": "now"}
            p = preview_change(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
            out = submit(engine, _change(engine, world, "change_price", {**params, **p.pinned}), FINANCE,
                         stripe=stripe_env.client)
            assert out.status == "applied"
            return p, stripe_env.client.v1.invoices.list({"customer": world.customer, "limit": 1}).data[0]

        change("platinum_monthly")
        down, _ = change("premium_monthly")
        assert down.amount_kind == "credit"
        credit = -stripe_env.client.v1.customers.retrieve(world.customer).balance
        assert credit > 0
        up, invoice = change("platinum_monthly")
        assert (up.amount_kind, up.amount_minor) == ("charge", invoice.amount_due)
        assert invoice.total > invoice.amount_due  # the credit paid part or all of it
        assert any("of which the member's credit balance pays" in line for line in up.summary), up.summary

    def test_items_waiting_for_the_next_invoice_are_in_the_amount_charged_now(self, engine, stripe_env, world):
        # A one-off charge added in Stripe waits for the member's next invoice; the switch's invoice
        # takes it, so "charged now" must too (it showed the prorations alone).
        waiting = stripe_env.client.v1.invoice_items.create(
            {"customer": world.customer, "amount": 500, "currency": "usd", "description": "Replacement card"})
        assert waiting.invoice is None
        params = {"price_id": world.prices["platinum_monthly"], "when": "now"}
        p = preview_change(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
        assert any("and adds $5.00 already waiting for the member's next invoice" in line for line in p.summary), \
            p.summary
        out = submit(engine, _change(engine, world, "change_price", {**params, **p.pinned}), FINANCE,
                     stripe=stripe_env.client)
        assert out.status == "applied"
        invoice = stripe_env.client.v1.invoices.list({"customer": world.customer, "limit": 1}).data[0]
        assert stripe_env.client.v1.invoice_items.retrieve(waiting.id).invoice == invoice.id
        assert (p.amount_kind, p.amount_minor) == ("charge", invoice.amount_due) and invoice.amount_due > 500

    def test_a_trial_changes_tier_without_a_charge_now(self, engine, stripe_env):
        # The preview said "$30.00 charged now" (the first invoice after the trial); Stripe charged nothing.
        w = build(engine, stripe_env.client, trial_days=7, email="tia@example.com")
        params = {"price_id": w.prices["platinum_monthly"], "when": "now"}
        p = preview_change(engine, _change(engine, w, "change_price", params), FINANCE, stripe=stripe_env.client)
        assert p.amount_minor == 0 and "the trial goes on and nothing is charged now" in p.summary[0], p.summary
        invoices_before = len(stripe_env.client.v1.invoices.list({"customer": w.customer}).data)
        assert submit(engine, _change(engine, w, "change_price", {**params, **p.pinned}), FINANCE,
                      stripe=stripe_env.client).status == "applied"
        assert len(stripe_env.client.v1.invoices.list({"customer": w.customer}).data) == invoices_before
        remote = stripe_env.client.v1.subscriptions.retrieve(w.subscription)
        assert remote.status == "trialing" and remote["items"].data[0].price.id == w.stripe_prices["platinum_monthly"]

    def test_a_member_leaving_at_period_end_is_told_the_change_does_not_keep_them(self, engine, stripe_env, world):
        submit(engine, _change(engine, world, "cancel", {"when": "period_end"}), SUPPORT, stripe=stripe_env.client)
        params = {"price_id": world.prices["platinum_monthly"], "when": "now"}
        p = preview_change(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
        assert any("still set to cancel on" in line for line in p.summary), p.summary
        submit(engine, _change(engine, world, "change_price", {**params, **p.pinned}), FINANCE, stripe=stripe_env.client)
        assert stripe_env.client.v1.subscriptions.retrieve(world.subscription).cancel_at_period_end is True

    def test_a_preview_read_long_ago_is_previewed_again(self, engine, stripe_env, world):
        # The confirmation charges at the preview's moment; an hour on, that amount is no longer
        # one to stand by (and Stripe refuses a moment before the current period).
        params = {"price_id": world.prices["platinum_monthly"], "when": "now"}
        p = preview_change(engine, _change(engine, world, "change_price", params), FINANCE, stripe=stripe_env.client)
        stale = {**params, "proration_date": p.pinned["proration_date"] - 2 * 3600}
        with pytest.raises(ChangeRefused, match="more than an hour old; preview the change again"):
            submit(engine, _change(engine, world, "change_price", stale), FINANCE, stripe=stripe_env.client)
        assert _sub(engine, world).price_id != world.prices["platinum_monthly"]

    def test_support_may_not_change_tier_and_wrong_currency_is_refused(self, engine, stripe_env, world):
        params = {"price_id": world.prices["platinum_monthly"], "when": "now"}
        with pytest.raises(ChangeRefused, match="role"):
            submit(engine, _change(engine, world, "change_price", params), SUPPORT, stripe=stripe_env.client)
        with pytest.raises(ChangeRefused, match="billed in USD"):
            submit(engine, _change(engine, world, "change_price", {"price_id": world.prices["premium_eur"],
                                                                   "when": "now"}), FINANCE, stripe=stripe_env.client)


class TestRetryAndContact:
    def test_retry_a_failed_invoice_declined_then_paid(self, engine, stripe_env):
        client = stripe_env.client
        w = build(engine, client, card="pm_card_chargeCustomerFail", email="bob@example.com")
        from core.models import Invoice

        with session_scope(engine) as s:
            ours = s.scalars(select(Invoice)).one()
            assert ours.status == "open"
            invoice_id, stripe_invoice = ours.id, ours.stripe_invoice_id
        with pytest.raises(ChangeRefused, match="declined"):
            submit(engine, _change(engine, w, "retry_invoice", {"invoice_id": invoice_id}), SUPPORT, stripe=client)
        with session_scope(engine) as s:
            assert s.get(Invoice, invoice_id).status == "open"
            assert s.scalars(select(ChangeRequest)).one().status == "failed"
        pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": w.customer})
        client.v1.customers.update(w.customer, {"invoice_settings": {"default_payment_method": pm.id}})
        mirror(engine, client, w.customer)
        out = submit(engine, _change(engine, w, "retry_invoice", {"invoice_id": invoice_id},
                                     reason="customer_updated_card"), SUPPORT, stripe=client)
        assert out.status == "applied"
        remote = client.v1.invoices.retrieve(stripe_invoice)
        assert remote.status == "paid"
        # The agent reads what Stripe answered, not only what was asked.
        from core.changes.result import done_sentence
        from core.money import format_money

        assert done_sentence("retry_invoice", out.result["detail"]) == (
            f"Stripe answered: the invoice is paid, {format_money(remote.amount_paid, remote.currency.upper())} collected.")
        with session_scope(engine) as s:
            assert s.get(Invoice, invoice_id).status == "paid"
            assert s.scalar(select(Subscription.status)) == "active"
        with pytest.raises(ChangeRefused, match="already paid"):
            submit(engine, _change(engine, w, "retry_invoice", {"invoice_id": invoice_id}), SUPPORT, stripe=client)

    def test_contact_details_go_to_stripe_first(self, engine, stripe_env, world):
        params = {"email": "ann.lee@example.com", "phone": "+44 20 7946 0000",
                  "address": {"line1": "1 Baker St", "city": "London", "country": "GB"}}
        submit(engine, _change(engine, world, "edit_contact", params), SUPPORT, stripe=stripe_env.client)
        remote = stripe_env.client.v1.customers.retrieve(world.customer)
        assert remote.email == "ann.lee@example.com" and remote.address.city == "London"
        mirror(engine, stripe_env.client, world.customer)  # the next sync agrees with what we wrote
        from core.models import Member

        with session_scope(engine) as s:
            m = s.get(Member, world.member_id)
            assert m.email == "ann.lee@example.com" and m.phone == "+44 20 7946 0000"

    def test_member_deleted_in_stripe_is_refused(self, engine, stripe_env, world):
        stripe_env.client.v1.customers.delete(world.customer)
        with pytest.raises(ChangeRefused):
            submit(engine, _change(engine, world, "cancel", {"when": "now"}), SUPPORT, stripe=stripe_env.client)
        with session_scope(engine) as s:
            req = s.scalars(select(ChangeRequest)).one()
            assert req.status == "failed"
        assert _sub(engine, world).status == "active"


class TestSyncAgrees:
    def test_a_member_resync_after_changes_changes_nothing(self, engine, stripe_env, world):
        from core.sync.reconcile import resync_member

        submit(engine, _change(engine, world, "change_price", {"price_id": world.prices["platinum_monthly"],
                                                               "when": "now"}), FINANCE, stripe=stripe_env.client)
        submit(engine, _change(engine, world, "refund", {"payment_id": world.payment_id, "amount": 100}), SUPPORT,
               stripe=stripe_env.client)
        submit(engine, _change(engine, world, "cancel", {"when": "period_end"}), SUPPORT, stripe=stripe_env.client)

        def state():
            with session_scope(engine) as s:
                sub = s.scalar(select(Subscription).where(Subscription.stripe_subscription_id == world.subscription))
                return ((sub.status, sub.price_id, sub.tier_id, sub.mrr_minor, sub.cancel_at_period_end,
                         sub.current_period_end), s.get(Payment, world.payment_id).amount_refunded,
                        s.scalar(select(func.count()).select_from(MembershipChange)),
                        s.scalar(select(func.count()).select_from(Refund)))

        before = state()
        result = resync_member(engine, stripe_env.client, world.member_id, actor=OPERATOR)
        assert result.status == "succeeded", result.message
        assert state() == before

    def test_dates_in_the_past_and_failed_payments_are_refused(self, engine, stripe_env):
        client = stripe_env.client
        w = build(engine, client, card="pm_card_chargeCustomerFail", email="cy@example.com")
        with session_scope(engine) as s:
            failed = s.scalar(select(Payment).where(Payment.member_id == w.member_id))
            assert failed.status == "failed"
        with pytest.raises(ChangeRefused, match="payment failed"):
            submit(engine, _change(engine, w, "refund", {"payment_id": failed.id, "full": True}), SUPPORT,
                   stripe=client)
        w2 = build(engine, client, email="dee@example.com")
        with pytest.raises(ChangeRefused, match="in the past"):
            submit(engine, _change(engine, w2, "pause", {"behavior": "void", "resumes_at": "2020-01-01"}), SUPPORT,
                   stripe=client)
        with session_scope(engine) as s:
            assert s.scalar(select(func.count()).select_from(ChangeRequest)) == 0
