"""Keyword-only factories with sensible defaults for hand-built worlds.

They insert rows directly (no Stripe, no mapping layer), so tests can state exactly the world
they need. Each returns the flushed ORM object.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count

from sqlalchemy.orm import Session

from core.models import Member, Payment, Price, Subscription, Tier

_seq = count(1)


def at(text: str) -> datetime:
    """``at("2026-03-01 12:00")`` -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_tier(session: Session, *, code: str = "premium", name: str | None = None, rank: int = 1) -> Tier:
    tier = Tier(code=code, name=name or code.title(), rank=rank, stripe_product_id=f"prod_{code}_{next(_seq)}")
    session.add(tier)
    session.flush()
    return tier


def make_price(session: Session, *, tier: Tier, currency: str = "USD", unit_amount: int = 999,
               interval: str = "month", interval_count: int = 1) -> Price:
    price = Price(tier_id=tier.id, currency=currency, unit_amount=unit_amount, interval=interval,
                  interval_count=interval_count, stripe_price_id=f"price_{next(_seq)}")
    session.add(price)
    session.flush()
    return price


def make_member(session: Session, *, email: str | None = None, name: str = "Test Member", country: str | None = "US",
                stripe_customer_id: str | None = None, created_at: datetime | None = None) -> Member:
    n = next(_seq)
    member = Member(email=email or f"member{n}@example.com", name=name, country=country,
                    stripe_customer_id=stripe_customer_id, created_at=created_at or at("2025-01-01 00:00"))
    session.add(member)
    session.flush()
    return member


def make_subscription(session: Session, *, member: Member, price: Price, status: str = "active",
                      created_at: datetime | None = None, **fields: object) -> Subscription:
    sub = Subscription(member_id=member.id, tier_id=price.tier_id, price_id=price.id, currency=price.currency,
                       status=status, stripe_subscription_id=f"sub_{next(_seq)}",
                       created_at=created_at or at("2025-01-01 00:00"), **fields)
    session.add(sub)
    session.flush()
    return sub


def make_payment(session: Session, *, member: Member, amount: int = 999, currency: str = "USD",
                 status: str = "succeeded", created_at: datetime | None = None, **fields: object) -> Payment:
    payment = Payment(member_id=member.id, amount=amount, currency=currency, status=status,
                      stripe_charge_id=f"ch_{next(_seq)}", created_at=created_at or at("2025-01-01 00:00"), **fields)
    session.add(payment)
    session.flush()
    return payment
