"""A member on a discount: what a tier change costs now is the discounted proration, in the
preview and in what Stripe charges. The sandbox billed prorations at the full price, and charged a
member on 20 % off a quarter more than the price they pay. In Stripe's default (classic) billing
mode a proration's amount is net of the discount; in flexible mode with ``itemized`` proration
discounts it is gross with the discount beside it, and the preview takes it off (either reads right). The member comes from the demo world
imported into the sandbox (the demo gives 6 % of subscriptions 20 % off, forever)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from core.changes import REASONS, Actor, ChangeInput, submit
from core.changes import preview as preview_change
from core.db import session_scope
from core.models import Member, Price, Subscription
from tests.support.changes_world import mirror, version
from tests.support.sandbox import import_demo_world

FINANCE = Actor.of("fin", ["finance"])
NOW = datetime(2026, 11, 20, tzinfo=UTC)


def test_a_discounted_member_s_tier_change_costs_the_discounted_proration(engine, stripe_env, sandbox):
    objects = import_demo_world(sandbox, seed=23, members=200, now=NOW)
    discounted = next(o for o in objects if o.get("object") == "subscription" and o.get("discounts")
                      and o["status"] == "active" and not o.get("cancel_at_period_end"))
    customer = discounted["customer"]
    mirror(engine, stripe_env.client, customer)
    with session_scope(engine) as s:
        member_id = s.scalar(select(Member.id).where(Member.stripe_customer_id == customer))
        sub = s.scalar(select(Subscription).where(Subscription.stripe_subscription_id == discounted["id"]))
        current = s.get(Price, sub.price_id)
        other = s.scalar(select(Price).where(Price.currency == current.currency, Price.interval == current.interval,
                                             Price.tier_id != current.tier_id, Price.active.is_(True)))
    params = {"price_id": other.id, "when": "now"}

    def change() -> ChangeInput:
        return ChangeInput("change_price", member_id, version(engine, member_id), REASONS["change_price"][0],
                           "asked to switch", params)

    preview = preview_change(engine, change(), FINANCE, stripe=stripe_env.client, now=NOW)
    # The preview says the discount carries over: "¥1,200/month" beside "MRR ¥960" said nothing of it.
    assert any("discount" in line and "applies to the new price too" in line for line in preview.summary), \
        preview.summary
    out = submit(engine, change(), FINANCE, stripe=stripe_env.client, now=NOW)
    assert out.status == "applied"
    invoice = stripe_env.client.v1.invoices.list({"customer": customer, "limit": 1}).data[0]
    lines = invoice.lines.data
    # A classic-mode subscription, Stripe's default: each proration's amount is already net of the
    # discount, which is named with an amount of 0.
    assert all(d.amount == 0 for line in lines for d in (line.discount_amounts or []))
    assert invoice.total == sum(line.amount for line in lines)
    # What the preview said is what Stripe charged: 80 % of the price difference for the time left,
    # worked out here from the prices and the period, not from the invoice's lines.
    assert preview.amount_minor == abs(invoice.total)
    start, end = (d.replace(tzinfo=d.tzinfo or UTC).timestamp()
                  for d in (sub.current_period_start, sub.current_period_end))
    left = (end - min(line.period.start for line in lines)) / (end - start)
    expected = round(abs(other.unit_amount - current.unit_amount) * left * 0.8)
    assert abs(preview.amount_minor - expected) <= len(lines) + 1, (preview.amount_minor, expected)
