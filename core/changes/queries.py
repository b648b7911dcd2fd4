"""Read side for the change forms and the Membership changes page: plain data, no ORM objects.

The public reads take the engine and read in one transaction of their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.changes.actions import ACTIONS
from core.changes.limits import Limits, load_limits
from core.changes.reasons import REASONS, label
from core.changes.state import current_subscription, member_snapshot
from core.db import session_scope
from core.models import ChangeRequest, Invoice, Member, Payment, Price, Tier
from core.models.enums import InvoiceStatus, PaymentStatus, SubscriptionStatus
from core.permissions import allowed

S = SubscriptionStatus


def available_actions(session: Session, member: Member, roles: frozenset[str] | tuple[str, ...]) -> list[str]:
    """The actions that make sense for this member's state and that these roles may attempt."""
    sub = current_subscription(session, member.id)
    has_customer = bool(member.stripe_customer_id) and member.deleted_in_stripe_at is None
    stripe_sub = sub is not None and not sub.complimentary and bool(sub.stripe_subscription_id)
    live = sub is not None and sub.status in (S.live() | {S.PAUSED, S.UNPAID})
    out = []
    if sub is not None and stripe_sub and has_customer and sub.status in {S.ACTIVE, S.TRIALING, S.PAST_DUE} \
            and not sub.pause_behavior:
        out.append("change_price")
    if sub is not None and live and (sub.complimentary or (stripe_sub and sub.status in {S.ACTIVE, S.TRIALING}
                                                           and not sub.pause_behavior)):
        out.append("extend")  # not while paused: offered, it was refused at Preview ("resume it first")
    if not live or sub is None:
        out.append("grant_comp")
    if sub is not None and stripe_sub and has_customer and live and not sub.pause_behavior:
        out.append("pause")
    if sub is not None and stripe_sub and has_customer and sub.pause_behavior and sub.status != S.CANCELED:
        out.append("resume")
    if live:
        out.append("cancel")
    if sub is not None and stripe_sub and has_customer and sub.cancel_at_period_end and sub.status not in S.ended():
        out.append("uncancel")
    if has_customer and sub is not None and sub.status in S.ended():
        out.append("reactivate")
    if has_customer:
        out.append("refund")
        out.append("retry_invoice")
    out.append("edit_contact")
    return [a for a in out if allowed(roles, ACTIONS[a].permission)]


def form_data(engine: Engine, member_id: int, roles: frozenset[str] | tuple[str, ...]) -> dict[str, Any] | None:
    """What the change forms of one member need (None: no such member), read in one transaction."""
    with session_scope(engine) as s:
        return _form_data(s, member_id, roles)


def _form_data(session: Session, member_id: int, roles: frozenset[str] | tuple[str, ...]) -> dict[str, Any] | None:
    member = session.get(Member, member_id)
    if member is None:
        return None
    sub = current_subscription(session, member.id)
    payments = session.execute(
        select(Payment.id, Payment.stripe_charge_id, Payment.amount, Payment.amount_refunded, Payment.currency,
               Payment.created_at).where(Payment.member_id == member.id, Payment.status == PaymentStatus.SUCCEEDED,
                                         Payment.disputed.is_(False), Payment.amount_refunded < Payment.amount)
        .order_by(Payment.created_at.desc()).limit(50)).all()
    invoices = session.execute(
        select(Invoice.id, Invoice.stripe_invoice_id, Invoice.amount_remaining, Invoice.currency, Invoice.created_at)
        .where(Invoice.member_id == member.id, Invoice.status == InvoiceStatus.OPEN)
        .order_by(Invoice.created_at.desc()).limit(20)).all()
    prices = session.execute(
        select(Price.id, Price.unit_amount, Price.currency, Price.interval, Tier.name, Tier.code)
        .join(Tier, Tier.id == Price.tier_id).where(Price.active.is_(True), Price.stripe_price_id.is_not(None))
        .order_by(Tier.rank, Price.currency, Price.interval)).all()
    tiers = session.execute(select(Tier.code, Tier.name).where(Tier.code != "free").order_by(Tier.rank)).all()
    actions = available_actions(session, member, roles)
    if not payments:
        actions = [a for a in actions if a != "refund"]
    if not invoices:
        actions = [a for a in actions if a != "retry_invoice"]
    return {
        "member_id": member.id,
        "version": member.version,
        "snapshot": member_snapshot(session, member),
        "currency": sub.currency if sub else None,
        "current_price_id": sub.price_id if sub else None,
        "actions": actions,
        "payments": [dict(r._mapping) for r in payments],
        "invoices": [dict(r._mapping) for r in invoices],
        "prices": [dict(r._mapping) for r in prices if sub is None or r.currency == sub.currency],
        "tiers": [dict(r._mapping) for r in tiers],
        "contact": {"email": member.email, "name": member.name, "phone": member.phone},
    }


def reasons_for(action: str) -> list[tuple[str, str]]:
    return [(r, label(r)) for r in REASONS.get(action, ())]


@dataclass(frozen=True)
class Overview:
    """The Membership changes page: the queue, the interrupted requests, the history, the limits."""

    pending: pd.DataFrame
    interrupted: pd.DataFrame
    history: pd.DataFrame
    limits: Limits


def overview(engine: Engine) -> Overview:
    with session_scope(engine) as s:
        return Overview(_requests_frame(s, statuses=("pending_approval",)), _requests_frame(s, statuses=("applying",)),
                        _requests_frame(s), load_limits(s))


def in_flight(engine: Engine, member_id: int) -> list[str]:
    """Sentences for this member's requests not finished yet (being applied, waiting for approval):
    the member page said nothing of a refund confirmed a moment before a reload, and the agent
    could think it had not happened."""
    with session_scope(engine) as s:
        rows = _requests_frame(s, statuses=("applying", "pending_approval"), member_id=member_id, limit=10)
    out = []
    for row in rows.to_dict("records"):
        what = f"{row['action']}, asked by {row['requested_by']} at {row['requested_at']:%Y-%m-%d %H:%M} UTC"
        if row["status"] == "applying":
            out.append(f"Being applied now: {what}. It finishes in a moment (reload to see it); if it stays, "
                       "Resume it on the Membership changes page. Do not make it again.")
        else:
            out.append(f"Waiting for a second person's approval: {what}. It is decided on the Membership changes page.")
    return out


def current_limits(engine: Engine) -> Limits:
    with session_scope(engine) as s:
        return load_limits(s)


def _requests_frame(session: Session, *, statuses: tuple[str, ...] | None = None, member_id: int | None = None,
                   limit: int = 500) -> pd.DataFrame:
    q = select(ChangeRequest, Member.email).join(Member, Member.id == ChangeRequest.member_id)
    if statuses:
        q = q.where(ChangeRequest.status.in_(statuses))
    if member_id is not None:
        q = q.where(ChangeRequest.member_id == member_id)
    rows = session.execute(q.order_by(ChangeRequest.requested_at.desc(), ChangeRequest.id.desc()).limit(limit)).all()
    data = []
    for req, email in rows:
        preview = (req.result or {}).get("preview") or {}
        data.append({
            "request_id": req.id, "requested_at": req.requested_at, "action": ACTIONS[req.action].title
            if req.action in ACTIONS else req.action, "member_id": req.member_id, "member_email": email,
            "status": req.status, "requested_by": req.requested_by, "reason": label(req.reason),
            "comment": req.comment,
            "summary": " ".join(preview.get("summary") or []),
            "amount_minor": preview.get("amount_minor"), "currency": preview.get("currency"),
            "decided_by": req.decided_by, "decided_at": req.decided_at, "decision_note": req.decision_note,
            "applied_at": req.applied_at, "error": req.error,
        })
    columns = ["request_id", "requested_at", "action", "member_id", "member_email", "status", "requested_by",
               "reason", "comment", "summary", "amount_minor", "currency", "decided_by", "decided_at",
               "decision_note", "applied_at", "error"]
    return pd.DataFrame(data, columns=columns)


def request_label(row: dict[str, Any]) -> str:
    """One line an approver can decide on: who asks, for what, how much, and why."""
    from core.money import format_money

    amount = (f" of {format_money(int(row['amount_minor']), row['currency'])}"
              if row.get("amount_minor") is not None and row.get("currency") and not pd.isna(row["amount_minor"])
              else "")
    asked = row.get("requested_at")
    when = f" on {asked:%Y-%m-%d %H:%M} UTC" if asked is not None and not pd.isna(asked) else ""
    comment = str(row.get("comment") or "").strip()
    if len(comment) > 120:
        comment = comment[:119] + "…"
    why = f"{row.get('reason')}" + (f": “{comment}”" if comment else "")
    return (f"#{row['request_id']} · {row['action']}{amount} for {row['member_email']} (member "
            f"{row['member_id']}) · asked by {row['requested_by']}{when} · why: {why}")
