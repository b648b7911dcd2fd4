"""Worlds for tests, written row by row with ``tests.support.factories`` (pages never build
rollups, so a world written that way ends with ``refresh_rollups``).

- ``build_small_world(session)``: a hand-built world (tiers, prices, members with subscriptions,
  payments with decline codes, a refund, a dispute, cards, invoices, membership changes) whose
  numbers tests can state exactly. ``load_world(engine)`` loads a small demo world first
  (``demo.load_demo``, 300 members) when ``prefer_demo`` and adds this world to it.
- ``create_staff(engine)``: the four demo sign-ins (one per role) with cheap bcrypt hashes.
- ``prepare_database(path)``: a migrated SQLite file with the world and the staff.
- ``build_random_world(session, seed)``: members with seeded random lives, for property tests
  of the metrics (evaluated at ``RANDOM_WORLD_NOW``).
- ``build_stripe_world(client, customers)``: a seeded world made in the Stripe sandbox through the
  API, as the app would.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.stripe_gateway import StripeClient
from tests.support.db import TEST_KEY, migrated_sqlite
from tests.support.factories import at, make_member, make_payment, make_price, make_subscription, make_tier

# ------------------------------------------------------------------ the small hand-built world

@dataclass(frozen=True)
class World:
    """Ids and expected figures of ``build_small_world``."""

    ann_id: int  # premium monthly USD, active, card visa 4242, a failed then succeeded renewal
    bob_id: int  # platinum yearly EUR, past due, insufficient_funds declines, a refund and a dispute
    cara_id: int  # canceled premium
    dan_id: int  # free member, no Stripe customer
    paying_usd_mrr: int  # sum of mrr_minor of active/past-due USD subscriptions
    paying_eur_mrr: int


def build_small_world(session: Session, *, now: Any = None) -> World:
    """Insert the small world; ``now`` (aware UTC) places this month's payments (default: now)."""
    from sqlalchemy import select

    from core.models import Dispute, Invoice, MembershipChange, PaymentMethod, Refund, StaffNote, Tier
    from core.timeutil import utc_now

    now = now or utc_now()
    # reuse the tiers when the demo catalogue is already loaded
    premium = session.scalar(select(Tier).where(Tier.code == "premium")) or make_tier(session, code="premium", rank=1)
    platinum = (session.scalar(select(Tier).where(Tier.code == "platinum"))
                or make_tier(session, code="platinum", rank=2))
    p_usd = make_price(session, tier=premium, currency="USD", unit_amount=999)
    pl_eur = make_price(session, tier=platinum, currency="EUR", unit_amount=19900, interval="year")

    ann = make_member(session, email="ann.lee@example.com", name="Ann Lee", stripe_customer_id="cus_ANN0001")
    bob = make_member(session, email="bob.stone@example.org", name="Bob Stone", country="DE",
                      stripe_customer_id="cus_BOB0002")
    cara = make_member(session, email="cara@example.net", name="Cara Diaz", stripe_customer_id="cus_CARA003")
    dan = make_member(session, email="dan@example.com", name="Dan Free", stripe_customer_id=None)
    ann.phone = "+1 555 0100"

    ann_sub = make_subscription(session, member=ann, price=p_usd, status="active", mrr_minor=999,
                                current_period_start=at("2026-11-01 00:00"), current_period_end=at("2026-12-01 00:00"))
    make_subscription(session, member=bob, price=pl_eur, status="past_due", mrr_minor=1658,
                      past_due_since=at("2026-11-10 00:00"))
    make_subscription(session, member=cara, price=p_usd, status="canceled", mrr_minor=0,
                      canceled_at=at("2026-06-01 00:00"), ended_at=at("2026-06-01 00:00"),
                      cancellation_reason="cancellation_requested", churn_kind="voluntary")

    pm = PaymentMethod(member_id=ann.id, stripe_payment_method_id="pm_ANN", brand="visa", last4="4242",
                       exp_month=8, exp_year=2028, is_default=True, created_at=at("2025-01-01 00:00"))
    session.add_all([pm, PaymentMethod(member_id=bob.id, stripe_payment_method_id="pm_BOB", brand="mastercard",
                                       last4="5555", exp_month=1, exp_year=2027, is_default=True,
                                       created_at=at("2025-01-01 00:00"))])
    inv = Invoice(stripe_invoice_id="in_ANN0001", member_id=ann.id, subscription_id=ann_sub.id, number="ANN-0001",
                  status="paid", billing_reason="subscription_cycle", currency="USD", subtotal=999, total=999,
                  amount_due=999, amount_paid=999, created_at=now, paid_at=now, attempt_count=2)
    session.add(inv)
    session.flush()
    make_payment(session, member=ann, amount=999, status="failed", created_at=now, invoice_id=inv.id,
                 decline_code="insufficient_funds", failure_code="card_declined", card_brand="visa",
                 card_last4="4242", attempt_number=1, is_renewal=True)
    ok = make_payment(session, member=ann, amount=999, status="succeeded", created_at=now, invoice_id=inv.id,
                      card_brand="visa", card_last4="4242", attempt_number=2, is_renewal=True)
    ok.stripe_charge_id = "ch_ANN_OK"
    bob_paid = make_payment(session, member=bob, amount=19900, currency="EUR", status="succeeded",
                            created_at=at("2025-11-10 00:00"), card_brand="mastercard", card_last4="5555",
                            amount_refunded=5000, disputed=True)
    make_payment(session, member=bob, amount=19900, currency="EUR", status="failed", created_at=now,
                 decline_code="insufficient_funds", failure_code="card_declined", card_brand="mastercard",
                 card_last4="5555", is_renewal=True)
    session.add_all([
        Refund(stripe_refund_id="re_BOB1", payment_id=bob_paid.id, member_id=bob.id, amount=5000, currency="EUR",
               status="succeeded", reason="requested_by_customer", created_at=at("2025-12-01 00:00")),
        Dispute(stripe_dispute_id="dp_BOB1", payment_id=bob_paid.id, member_id=bob.id, amount=14900,
                currency="EUR", status="needs_response", reason="fraudulent", created_at=at("2026-01-05 00:00")),
        MembershipChange(member_id=ann.id, subscription_id=ann_sub.id, effective_at=at("2025-01-01 00:00"),
                         kind="created", to_status="active", to_tier_id=premium.id, currency="USD",
                         mrr_before_minor=0, mrr_after_minor=999, source="demo"),
        StaffNote(member_id=ann.id, author="support", body="Called about a double charge.",
                  created_at=at("2026-02-01 10:00")),
    ])
    session.flush()
    return World(ann_id=ann.id, bob_id=bob.id, cara_id=cara.id, dan_id=dan.id, paying_usd_mrr=999,
                 paying_eur_mrr=1658)


def create_staff(engine: Engine, *, extra: dict[str, str] | None = None) -> None:
    """The four demo accounts (username = role) and ``extra`` {username: roles} with password
    ``<username>-demo-pass``; bcrypt cost 4 keeps tests fast."""
    from core import staff
    from core.permissions import Actor
    from demo.accounts import DEMO_ACCOUNTS

    admin = Actor.of("test", "admin")
    for username, name, roles, password in DEMO_ACCOUNTS:
        staff.add_account(engine, actor=admin, username=username, name=name, email=f"{username}@example.com",
                          roles=roles, password=password, bcrypt_rounds=4)
    for username, roles in (extra or {}).items():
        staff.add_account(engine, actor=admin, username=username, name=username.title(),
                          email=f"{username}@example.com", roles=roles, password=f"{username}-demo-pass",
                          bcrypt_rounds=4)


def load_world(engine: Engine, *, prefer_demo: bool = True, demo_members: int = 300) -> World:
    """The demo world (when the demo loader exists and ``prefer_demo``) plus, always, the small
    hand-built world whose members tests name (Ann Lee, Bob Stone, ...), with the metric rollups
    built."""
    if prefer_demo:
        with contextlib.suppress(ImportError):
            from demo import load_demo

            load_demo(engine, members=demo_members, seed=7)
    with Session(engine, expire_on_commit=False) as s:
        world = build_small_world(s)
        s.commit()
    refresh_rollups(engine)
    return world


def refresh_rollups(engine: Engine) -> None:
    """Bring the metric rollups up to date after writing rows directly, as the sync, the demo
    loader and the change service do after theirs (pages read them and never build them)."""
    from core.metrics.rollups import refresh

    refresh(engine)


def prepare_database(path: Path, *, prefer_demo: bool = True) -> tuple[str, World]:
    """A migrated SQLite file with the world and staff (plus ``lockme``, ``gone`` for lockout and
    disabled-account tests)."""
    from core import crypto
    from core.db import make_engine

    crypto.set_keyring(crypto.KeyRing([TEST_KEY]))
    url = migrated_sqlite(path)
    eng = make_engine(url)
    world = load_world(eng, prefer_demo=prefer_demo)
    create_staff(eng, extra={"lockme": "support", "gone": "support"})
    from core import staff
    from core.permissions import Actor

    staff.change_active(eng, actor=Actor.of("test", "admin"), username="gone", active=False)
    eng.dispose()
    return url, world


# ------------------------------------------------------------------ random lives, for metrics properties

RANDOM_NOW = at("2026-07-01 00:00")  # when a random world is evaluated
RANDOM_CURRENCIES = {"USD": 1000, "EUR": 900, "GBP": 800, "JPY": 1500}
_COUNTRY = {"USD": "US", "EUR": "DE", "GBP": "GB", "JPY": "JP"}


def build_random_world(session, seed: int, members: int = 24, *, after: datetime | None = None) -> None:
    """Members with random lives: start, upgrades, downgrades, past due (recovered or not),
    cancellations and returns, renewals with failed attempts and retries, refunds, disputes."""
    from tests.support.factories import make_change, make_dispute, make_invoice, make_refund

    rng = random.Random(seed)
    tiers = [make_tier(session, code=f"t{seed}a", rank=1), make_tier(session, code=f"t{seed}b", rank=2)]
    prices = {(cur, k, iv): make_price(session, tier=tiers[k], currency=cur,
                                       unit_amount=amount * (k + 1) * (12 if iv == "year" else 1), interval=iv)
              for cur, amount in RANDOM_CURRENCIES.items() for k in (0, 1) for iv in ("month", "year")}
    lo = after or at("2025-05-01 00:00")
    span = (RANDOM_NOW - lo).total_seconds()
    for _ in range(members):
        cur = rng.choice(list(RANDOM_CURRENCIES))
        member = make_member(session, country=_COUNTRY[cur])
        k, iv = rng.randint(0, 1), rng.choice(["month", "month", "year"])
        price = prices[(cur, k, iv)]
        mrr = price.unit_amount // (12 if iv == "year" else 1)
        sub = make_subscription(session, member=member, price=price, mrr_minor=mrr)
        t = lo + timedelta(seconds=rng.random() * span * 0.5)
        make_change(session, subscription=sub, effective_at=t, mrr_after=mrr, kind="created")
        status, current = "active", mrr
        for _ in range(rng.randint(0, 5)):
            t += timedelta(days=rng.randint(3, 70))
            if t >= RANDOM_NOW:
                break
            event = rng.choice(["upgrade", "downgrade", "past_due", "cancel", "return", "renew", "renew"])
            if event == "upgrade" and status == "active" and current:
                new = current * 2
                make_change(session, subscription=sub, effective_at=t, mrr_before=current, mrr_after=new, kind="upgraded")
                current = new
            elif event == "downgrade" and status == "active" and current > 1:
                new = current // 2
                make_change(session, subscription=sub, effective_at=t, mrr_before=current, mrr_after=new,
                            kind="downgraded")
                current = new
            elif event == "past_due" and status == "active":
                make_change(session, subscription=sub, effective_at=t, mrr_before=current, mrr_after=current,
                            kind="past_due", from_status="active", to_status="past_due")
                status = "past_due"
                later = t + timedelta(days=rng.randint(1, 40))
                if later < RANDOM_NOW:
                    end_status = rng.choice(["active", "canceled"])
                    make_change(session, subscription=sub, effective_at=later, mrr_before=current,
                                mrr_after=current if end_status == "active" else 0,
                                kind="recovered" if end_status == "active" else "canceled", from_status="past_due",
                                to_status=end_status, churn_kind=None if end_status == "active" else "involuntary")
                    status, t = end_status, later
            elif event == "cancel" and status == "active":
                make_change(session, subscription=sub, effective_at=t, mrr_before=current, mrr_after=0,
                            kind="canceled", to_status="canceled", churn_kind="voluntary")
                status = "canceled"
            elif event == "return" and status == "canceled":
                current = mrr
                make_change(session, subscription=sub, effective_at=t, mrr_after=current, kind="reactivated",
                            from_status="canceled", to_status="active")
                status = "active"
            elif event == "renew":
                inv = make_invoice(session, member=member, subscription=sub, amount=price.unit_amount, currency=cur,
                                   created_at=t)
                first_ok = rng.random() < 0.7
                pay = make_payment(session, member=member, amount=price.unit_amount, currency=cur, invoice_id=inv.id,
                                   status="succeeded" if first_ok else "failed", is_renewal=True, attempt_number=1,
                                   created_at=t, decline_code=None if first_ok else rng.choice(
                                       ["insufficient_funds", "expired_card", "do_not_honor"]),
                                   card_brand=rng.choice(["visa", "mastercard"]), card_country=_COUNTRY[cur],
                                   fee=rng.choice([None, 30]))
                if not first_ok and rng.random() < 0.6:
                    pay = make_payment(session, member=member, amount=price.unit_amount, currency=cur,
                                       invoice_id=inv.id, is_renewal=True, attempt_number=2,
                                       created_at=t + timedelta(days=rng.randint(1, 40)))
                if pay.status == "succeeded" and rng.random() < 0.2:
                    make_refund(session, payment=pay, amount=pay.amount // 2, created_at=t + timedelta(days=3))
                if pay.status == "succeeded" and rng.random() < 0.1:
                    d = make_dispute(session, payment=pay, status=rng.choice(["lost", "won"]))
                    d.closed_at = t + timedelta(days=20)
        sub.status = status
        if rng.random() < 0.3:
            sub.trial_start, sub.trial_end = t - timedelta(days=14), t
            make_invoice(session, member=member, subscription=sub, amount=price.unit_amount, currency=cur,
                         created_at=t, status=rng.choice(["paid", "open"]), billing_reason="subscription_create")
    session.commit()


# ------------------------------------------------------------------ a world in the Stripe sandbox

@dataclass
class StripeWorld:
    prices: dict[str, str]
    customers: list[str]
    subscriptions: list[str]


def build_stripe_world(c: StripeClient, customers: int, *, seed: int = 7, clock: str | None = None) -> StripeWorld:
    rng = random.Random(seed)
    premium = c.v1.products.create(params={"name": "Premium", "metadata": {"tier": "premium"}})
    platinum = c.v1.products.create(params={"name": "Platinum", "metadata": {"tier": "platinum"}})
    prices = {
        "premium_usd": c.v1.prices.create(params={"product": premium.id, "currency": "usd", "unit_amount": 999,
                                                  "recurring": {"interval": "month"}}).id,
        "premium_eur": c.v1.prices.create(params={"product": premium.id, "currency": "eur", "unit_amount": 899,
                                                  "recurring": {"interval": "month"}}).id,
        "platinum_usd": c.v1.prices.create(params={"product": platinum.id, "currency": "usd", "unit_amount": 1999,
                                                   "recurring": {"interval": "month"}}).id,
        "premium_jpy_year": c.v1.prices.create(params={"product": premium.id, "currency": "jpy", "unit_amount": 12000,
                                                       "recurring": {"interval": "year"}}).id,
    }
    world = StripeWorld(prices, [], [])
    for i in range(customers):
        card = rng.choice(["pm_card_visa"] * 8 + ["pm_card_mastercard", "pm_card_chargeDeclinedInsufficientFunds"])
        params: dict[str, Any] = {"email": f"m{i}@example.com", "name": f"Member {i}", "payment_method": card,
                                  "invoice_settings": {"default_payment_method": card}}
        if clock:
            params["test_clock"] = clock
        cus = c.v1.customers.create(params=params)
        world.customers.append(cus.id)
        price = rng.choice(["premium_usd", "premium_usd", "premium_eur", "premium_jpy_year"])
        sub = c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": prices[price]}]})
        world.subscriptions.append(sub.id)
        roll = rng.random()
        if sub.status != "active":
            continue
        if roll < 0.2 and price == "premium_usd":
            item = sub["items"]["data"][0]["id"]
            c.v1.subscriptions.update(sub.id, params={"items": [{"id": item, "price": prices["platinum_usd"]}],
                                                      "proration_behavior": "none"})
        elif roll < 0.35:
            c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
        elif roll < 0.45:
            c.v1.subscriptions.cancel(sub.id)
        elif roll < 0.55:
            charge = c.v1.charges.list(params={"customer": cus.id, "limit": 1}).data[0]
            c.v1.refunds.create(params={"charge": charge.id, "amount": 100})
    return world
