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


# --- alerts (appended by the alerts area) ----------------------------------------------------------

def make_payment_batch(session: Session, *, member: Member, start: datetime, end: datetime, count: int,
                       failed: int = 0, **fields: object) -> None:
    """``count`` payment attempts spread evenly over ``[start, end)``, ``failed`` of them failed
    (spread evenly too); extra ``fields`` (decline_code, card_brand, currency, ...) apply to all."""
    from sqlalchemy import insert

    if count <= 0:
        return
    step = (end - start) / count
    fail_every = count / failed if failed else 0
    fail_at = {int(i * fail_every) for i in range(failed)} if failed else set()
    rows = []
    for i in range(count):
        is_failed = i in fail_at
        row = {"member_id": member.id, "amount": 999, "currency": "USD", "stripe_charge_id": f"ch_b{next(_seq)}",
               "status": "failed" if is_failed else "succeeded", "created_at": start + step * i,
               "attempt_number": 1, "is_renewal": True, "amount_refunded": 0, "disputed": False}
        row.update(fields)
        if not is_failed:
            for key in ("decline_code", "failure_code", "failure_message"):
                row.pop(key, None)
        elif "decline_code" not in fields:
            row.setdefault("failure_code", "card_declined")
            row["decline_code"] = "generic_decline"
        rows.append(row)
    session.execute(insert(Payment), rows)
    session.flush()


def make_refund(session: Session, *, payment: Payment, amount: int | None = None, status: str = "succeeded",
                created_at: datetime | None = None, reason: str | None = "requested_by_customer"):
    from core.models import Refund

    refund = Refund(payment_id=payment.id, member_id=payment.member_id, amount=amount or payment.amount,
                    currency=payment.currency, status=status, reason=reason, stripe_refund_id=f"re_{next(_seq)}",
                    created_at=created_at or payment.created_at)
    session.add(refund)
    session.flush()
    return refund


def make_dispute(session: Session, *, payment: Payment, status: str = "needs_response",
                 created_at: datetime | None = None, reason: str | None = "fraudulent"):
    from core.models import Dispute

    dispute = Dispute(payment_id=payment.id, member_id=payment.member_id, amount=payment.amount,
                      currency=payment.currency, status=status, reason=reason, stripe_dispute_id=f"dp_{next(_seq)}",
                      created_at=created_at or payment.created_at)
    session.add(dispute)
    session.flush()
    return dispute


def make_sync_run(session: Session, *, started_at: datetime, finished_at: datetime | None = None,
                  status: str = "succeeded", error: str | None = None, kind: str = "incremental"):
    from core.models import SyncRun

    run = SyncRun(kind=kind, started_at=started_at, finished_at=finished_at, status=status, error=error, counts={})
    session.add(run)
    session.flush()
    return run


def make_stripe_event(session: Session, *, created_at: datetime, type: str = "invoice.paid"):
    from core.models import StripeEvent

    event = StripeEvent(id=f"evt_{next(_seq)}", type=type, created_at=created_at, payload={}, source="pull",
                        received_at=created_at)
    session.add(event)
    session.flush()
    return event


# --- metrics (appended by the metrics area) --------------------------------------------------------

def make_change(session: Session, *, subscription: Subscription, effective_at: datetime, mrr_after: int,
                mrr_before: int | None = None, kind: str = "status_changed", from_status: str | None = None,
                to_status: str | None = "active", churn_kind: str | None = None, reason: str | None = None,
                to_price: Price | None = None, recorded_at: datetime | None = None):
    """One membership change of ``subscription``: its MRR becomes ``mrr_after`` at ``effective_at``."""
    from core.models import MembershipChange

    change = MembershipChange(
        member_id=subscription.member_id, subscription_id=subscription.id, effective_at=effective_at, kind=kind,
        from_status=from_status, to_status=to_status, currency=subscription.currency,
        mrr_before_minor=mrr_before or 0, mrr_after_minor=mrr_after, churn_kind=churn_kind, reason=reason,
        to_price_id=to_price.id if to_price else subscription.price_id,
        to_tier_id=to_price.tier_id if to_price else subscription.tier_id, source="demo",
        stripe_event_id=f"evt_m{next(_seq)}", recorded_at=recorded_at or effective_at)
    session.add(change)
    session.flush()
    return change


def make_invoice(session: Session, *, member: Member, subscription: Subscription | None = None, amount: int = 999,
                 currency: str = "USD", status: str = "paid", billing_reason: str = "subscription_cycle",
                 created_at: datetime | None = None, **fields: object):
    from core.models import Invoice

    invoice = Invoice(member_id=member.id, subscription_id=subscription.id if subscription else None,
                      stripe_invoice_id=f"in_{next(_seq)}", status=status, billing_reason=billing_reason,
                      currency=currency, subtotal=amount, total=amount, amount_due=amount,
                      amount_paid=amount if status == "paid" else 0, created_at=created_at or at("2025-01-01 00:00"),
                      **fields)
    session.add(invoice)
    session.flush()
    return invoice


def make_card(session: Session, *, member: Member, brand: str = "visa", exp_month: int = 12, exp_year: int = 2030,
              last4: str = "4242", country: str | None = "US"):
    from core.models import PaymentMethod

    card = PaymentMethod(member_id=member.id, stripe_payment_method_id=f"pm_{next(_seq)}", brand=brand, last4=last4,
                         exp_month=exp_month, exp_year=exp_year, country=country, is_default=True)
    session.add(card)
    session.flush()
    return card
