"""Members for staff: one search box, the member page's read model, and staff notes.

Guarantees:
- ``search`` never raises on any text: an empty or odd query returns an empty frame. It is the
  first page of ``core.member_search.search_page`` (ids, e-mail, words of the name and e-mail with
  case and accents folded, from indexes; best match first; the page knows the true total); each
  row says what matched (``matched_on``).
- ``member_view`` returns plain data (a dataclass of values and DataFrames, never ORM objects),
  every timestamp converted to the business time zone; money stays integer minor units beside
  its currency.
- ``add_note`` checks the ADD_NOTE permission in core, validates, writes the encrypted note,
  bumps ``members.version`` and writes the audit entry, all in one transaction of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, aliased

from core import audit, stripe_store
from core.audit.query import as_json_text, what_changed
from core.db import session_scope
from core.member_search import PAGE_SIZE, SEARCH_COLUMNS, search_page
from core.models import (
    AuditEntry,
    ChangeRequest,
    Dispute,
    Invoice,
    Member,
    MembershipChange,
    Payment,
    PaymentMethod,
    Price,
    Refund,
    StaffNote,
    Subscription,
    Tier,
)
from core.permissions import Actor, Permission, guarded
from core.timeutil import utc_now, zone

SEARCH_LIMIT = PAGE_SIZE
NOTE_MAX_CHARS = 4000


class MemberError(ValueError):
    """Bad input for a member operation; str(error) is the sentence to show."""


def search(engine: Engine, text: str | None, *, limit: int = SEARCH_LIMIT) -> pd.DataFrame:
    """The first ``limit`` members matching ``text``, best first (``core.member_search``)."""
    return search_page(engine, text, limit=limit).rows


def recent_changes(engine: Engine, *, limit: int = 15, tz: str = "UTC") -> pd.DataFrame:
    """The members whose membership changed most recently (newest first, each member once), in the
    search's columns; ``matched_on`` says what changed and when. What a support agent opens the
    Members page to see before typing anything: who just signed up, upgraded, churned or failed."""
    zone_ = zone(tz)
    with Session(engine) as s:
        latest: dict[int, tuple[str, datetime]] = {}
        q = (select(MembershipChange.member_id, MembershipChange.kind, MembershipChange.effective_at)
             .order_by(MembershipChange.effective_at.desc(), MembershipChange.id.desc()).limit(limit * 8))
        for mid, kind, at in s.execute(q):
            if mid not in latest and len(latest) < limit:
                latest[mid] = (kind, at)
        if not latest:
            return pd.DataFrame(columns=SEARCH_COLUMNS)
        subs = latest_subscriptions(s, list(latest))
        members = {m.id: m for m in s.scalars(select(Member).where(Member.id.in_(list(latest))))}
    rows = []
    for mid, (kind, at) in latest.items():
        m, sub = members[mid], subs.get(mid)
        rows.append({"member_id": mid, "email": m.email, "name": m.name, "country": m.country,
                     "stripe_customer_id": m.stripe_customer_id,
                     "status": sub["status"] if sub else "no membership", "tier": sub["tier"] if sub else "free",
                     "matched_on": f"{kind.replace('_', ' ')} {at.astimezone(zone_):%Y-%m-%d %H:%M %Z}"})
    return pd.DataFrame(rows, columns=SEARCH_COLUMNS)


def latest_subscriptions(s: Session, member_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per member, the subscription that describes them now: a live one first, else the newest."""
    live_rank = {"active": 0, "trialing": 0, "past_due": 0, "paused": 1, "unpaid": 2}
    out: dict[int, tuple[tuple[int, float], dict[str, Any]]] = {}
    q = (select(Subscription, Tier.code, Tier.name).join(Tier, Tier.id == Subscription.tier_id)
         .where(Subscription.member_id.in_(member_ids)))
    for sub, code, name in s.execute(q):
        key = (live_rank.get(sub.status, 3), -(sub.created_at.timestamp() if sub.created_at else 0))
        data = {"status": sub.status, "tier": code, "tier_name": name, "subscription_id": sub.id}
        if sub.member_id not in out or key < out[sub.member_id][0]:
            out[sub.member_id] = (key, data)
    return {mid: v[1] for mid, v in out.items()}


@dataclass
class MemberView:
    """Everything the member page shows, as plain values and DataFrames."""

    member_id: int
    email: str
    name: str
    country: str | None
    phone: str | None
    stripe_customer_id: str | None
    created_at: datetime
    version: int
    status: str
    tier: str
    interval: str | None
    price_minor: int | None
    currency: str | None
    mrr_minor: int | None
    period_start: datetime | None
    period_end: datetime | None
    cancel_at_period_end: bool
    tz: str
    pause_behavior: str | None = None  # collection paused (Stripe's pause_collection.behavior)
    pause_resumes_at: datetime | None = None
    ended_at: datetime | None = None  # when the current subscription ended (canceled at once or at its period end)
    subscriptions: pd.DataFrame = field(default_factory=pd.DataFrame)
    payment_methods: pd.DataFrame = field(default_factory=pd.DataFrame)
    changes: pd.DataFrame = field(default_factory=pd.DataFrame)
    invoices: pd.DataFrame = field(default_factory=pd.DataFrame)
    payments: pd.DataFrame = field(default_factory=pd.DataFrame)
    refunds: pd.DataFrame = field(default_factory=pd.DataFrame)
    disputes: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: pd.DataFrame = field(default_factory=pd.DataFrame)
    audit: pd.DataFrame = field(default_factory=pd.DataFrame)


def _local(value: datetime | None, tz: Any) -> datetime | None:
    return None if value is None else value.astimezone(tz)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def version_of(engine: Engine, member_id: int) -> int | None:
    """The member's version now (one read by primary key): every committed change raises it, so a
    view cached under it is never older than the last change, in any session."""
    with Session(engine) as s:
        return s.scalar(select(Member.version).where(Member.id == member_id))


def member_view(engine: Engine, member_id: int, *, tz: str = "UTC") -> MemberView | None:
    """The member page's data, or None when there is no such member."""
    z = zone(tz)
    with Session(engine) as s:
        m = s.get(Member, member_id)
        if m is None:
            return None
        tiers = {t.id: t.code for t in s.scalars(select(Tier))}
        subs = list(s.scalars(select(Subscription).where(Subscription.member_id == member_id)
                              .order_by(Subscription.created_at.desc())))
        prices = {p.id: p for p in s.scalars(select(Price).where(
            Price.id.in_([x.price_id for x in subs if x.price_id] or [0])))}
        current = latest_subscriptions(s, [member_id]).get(member_id)
        cur = next((x for x in subs if current and x.id == current["subscription_id"]), None)
        price = prices.get(cur.price_id) if cur and cur.price_id else None
        view = MemberView(
            member_id=m.id, email=m.email, name=m.name, country=m.country, phone=m.phone,
            stripe_customer_id=m.stripe_customer_id, created_at=m.created_at.astimezone(z), version=m.version,
            status=cur.status if cur else "no membership", tier=tiers.get(cur.tier_id, "?") if cur else "free",
            interval=price.interval if price else None, price_minor=price.unit_amount if price else None,
            currency=cur.currency if cur else None, mrr_minor=cur.mrr_minor if cur else None,
            period_start=_local(cur.current_period_start, z) if cur else None,
            period_end=_local(cur.current_period_end, z) if cur else None,
            cancel_at_period_end=bool(cur.cancel_at_period_end) if cur else False, tz=tz,
            pause_behavior=cur.pause_behavior if cur else None,
            pause_resumes_at=_local(cur.pause_resumes_at, z) if cur else None,
            ended_at=_local(cur.ended_at, z) if cur else None,
        )
        view.subscriptions = _frame([{
            "subscription_id": x.id, "stripe_subscription_id": x.stripe_subscription_id, "status": x.status,
            "tier": tiers.get(x.tier_id), "interval": prices[x.price_id].interval if x.price_id in prices else None,
            "currency": x.currency, "mrr_minor": x.mrr_minor, "created_at": _local(x.created_at, z),
            "current_period_end": _local(x.current_period_end, z), "cancel_at_period_end": x.cancel_at_period_end,
            "canceled_at": _local(x.canceled_at, z), "cancellation_reason": x.cancellation_reason,
            "complimentary": x.complimentary,
        } for x in subs], ["subscription_id", "stripe_subscription_id", "status", "tier", "interval", "currency",
                           "mrr_minor", "created_at", "current_period_end", "cancel_at_period_end", "canceled_at",
                           "cancellation_reason", "complimentary"])
        view.payment_methods = _frame([{
            "brand": p.brand, "last4": p.last4,
            "expiry": f"{p.exp_month:02d}/{p.exp_year}" if p.exp_month and p.exp_year else None,
            "type": p.type, "wallet": p.wallet, "country": p.country, "funding": p.funding,
            "default": p.is_default, "detached_at": _local(p.detached_at, z),
            "stripe_payment_method_id": p.stripe_payment_method_id,
        } for p in s.scalars(select(PaymentMethod).where(PaymentMethod.member_id == member_id)
                             .order_by(PaymentMethod.is_default.desc(), PaymentMethod.created_at.desc()))],
            ["brand", "last4", "expiry", "type", "wallet", "country", "funding", "default", "detached_at",
             "stripe_payment_method_id"])
        from_tier, to_tier = aliased(Tier), aliased(Tier)
        view.changes = _frame([{
            "effective_at": _local(c.effective_at, z), "kind": c.kind, "from_status": c.from_status,
            "to_status": c.to_status, "from_tier": ft, "to_tier": tt, "currency": c.currency,
            "mrr_before_minor": c.mrr_before_minor, "mrr_after_minor": c.mrr_after_minor, "reason": c.reason,
            "churn_kind": c.churn_kind, "source": c.source, "actor": c.actor,
        } for c, ft, tt in s.execute(
            select(MembershipChange, from_tier.code, to_tier.code)
            .outerjoin(from_tier, from_tier.id == MembershipChange.from_tier_id)
            .outerjoin(to_tier, to_tier.id == MembershipChange.to_tier_id)
            .where(MembershipChange.member_id == member_id)
            .order_by(MembershipChange.effective_at.desc(), MembershipChange.id.desc()))],
            ["effective_at", "kind", "from_status", "to_status", "from_tier", "to_tier", "currency",
             "mrr_before_minor", "mrr_after_minor", "reason", "churn_kind", "source", "actor"])
        view.invoices = _frame([{
            "invoice_id": i.id, "stripe_invoice_id": i.stripe_invoice_id, "number": i.number, "status": i.status,
            "billing_reason": i.billing_reason, "currency": i.currency, "total_minor": i.total,
            "amount_paid_minor": i.amount_paid, "amount_remaining_minor": i.amount_remaining,
            "created_at": _local(i.created_at, z), "paid_at": _local(i.paid_at, z),
            "attempt_count": i.attempt_count, "next_payment_attempt_at": _local(i.next_payment_attempt_at, z),
        } for i in s.scalars(select(Invoice).where(Invoice.member_id == member_id)
                             .order_by(Invoice.created_at.desc()))],
            ["invoice_id", "stripe_invoice_id", "number", "status", "billing_reason", "currency", "total_minor",
             "amount_paid_minor", "amount_remaining_minor", "created_at", "paid_at", "attempt_count",
             "next_payment_attempt_at"])
        view.payments = _frame([{
            "payment_id": p.id, "stripe_charge_id": p.stripe_charge_id, "invoice_id": p.invoice_id,
            "created_at": _local(p.created_at, z), "status": p.status, "currency": p.currency,
            "amount_minor": p.amount, "amount_refunded_minor": p.amount_refunded, "attempt_number": p.attempt_number,
            "failure_code": p.failure_code, "decline_code": p.decline_code, "failure_message": p.failure_message,
            "card_brand": p.card_brand, "card_last4": p.card_last4, "disputed": p.disputed,
        } for p in s.scalars(select(Payment).where(Payment.member_id == member_id)
                             .order_by(Payment.created_at.desc(), Payment.id.desc()))],
            ["created_at", "status", "amount_minor", "currency", "decline_code", "failure_code", "card_brand",
             "card_last4", "attempt_number", "amount_refunded_minor", "disputed", "failure_message", "invoice_id",
             "payment_id", "stripe_charge_id"])
        # Stripe keeps three refund reasons; a refund staff made here was sent under the nearest one
        # ("Goodwill gesture" came back as "Customer asked for a refund"). Ours, and who made it,
        # come from the change request that made the refund.
        staff = {str(ids.get("refund")): (who, why) for ids, who, why in s.execute(
            select(ChangeRequest.stripe_ids, ChangeRequest.requested_by, ChangeRequest.reason).where(
                ChangeRequest.member_id == member_id, ChangeRequest.action == "refund",
                ChangeRequest.status == "applied")) if isinstance(ids, dict) and ids.get("refund")}
        view.refunds = _frame([{
            "refund_id": r.id, "stripe_refund_id": r.stripe_refund_id, "payment_id": r.payment_id,
            "created_at": _local(r.created_at, z), "status": r.status, "currency": r.currency,
            "amount_minor": r.amount, "reason": staff[r.stripe_refund_id][1] if r.stripe_refund_id in staff else r.reason,
            "made_by": staff[r.stripe_refund_id][0] if r.stripe_refund_id in staff else None,
        } for r in s.scalars(select(Refund).where(Refund.member_id == member_id).order_by(Refund.created_at.desc()))],
            ["refund_id", "stripe_refund_id", "payment_id", "created_at", "status", "currency", "amount_minor",
             "reason", "made_by"])
        view.disputes = _frame([{
            "dispute_id": d.id, "stripe_dispute_id": d.stripe_dispute_id, "payment_id": d.payment_id,
            "created_at": _local(d.created_at, z), "status": d.status, "currency": d.currency,
            "amount_minor": d.amount, "reason": d.reason, "closed_at": _local(d.closed_at, z),
        } for d in s.scalars(select(Dispute).where(Dispute.member_id == member_id)
                             .order_by(Dispute.created_at.desc()))],
            ["dispute_id", "stripe_dispute_id", "payment_id", "created_at", "status", "currency", "amount_minor",
             "reason", "closed_at"])
        view.notes = _frame([{"created_at": _local(n.created_at, z), "author": n.author, "note": n.body}
                             for n in s.scalars(select(StaffNote).where(StaffNote.member_id == member_id)
                                                .order_by(StaffNote.created_at.desc(), StaffNote.id.desc()))],
                            ["created_at", "author", "note"])
        # Before and after as on the Audit log page: the member page's tab said who and why, not what.
        view.audit = _frame([{
            "at": _local(a.at, z), "actor": a.actor, "action": a.action, "what_changed": what_changed(a.before, a.after),
            "reason": a.reason, "comment": a.comment, "outcome": a.outcome, "approved_by": a.approved_by, "before": as_json_text(a.before),
            "after": as_json_text(a.after),
        } for a in s.scalars(select(AuditEntry).where(AuditEntry.member_id == member_id)
                             .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(500))],
            ["at", "actor", "action", "what_changed", "reason", "comment", "outcome", "approved_by", "before", "after"])
        return view


NOTE_REPEAT_WINDOW = timedelta(minutes=1)


@guarded(Permission.ADD_NOTE)
def add_note(engine: Engine, *, actor: Actor, member_id: int, body: str,
             expected_version: int | None = None) -> StaffNote:
    """Add a staff note (encrypted at rest), bump the member's version, audit it: one transaction."""
    text = _note_text(body)
    with session_scope(engine) as session:
        member = session.get(Member, member_id, with_for_update=True)
        if member is None:
            raise MemberError(f"There is no member {member_id}.")
        now = utc_now()
        # The same note by the same person a moment ago is this one sent twice (a double click on
        # "Save note", a reload that submits again): it is saved once. Bodies are encrypted, so
        # the few notes of the last minute are compared here, not in SQL.
        for recent in session.scalars(select(StaffNote).where(
                StaffNote.member_id == member_id, StaffNote.author == actor.username,
                StaffNote.created_at >= now - NOTE_REPEAT_WINDOW)):
            if recent.body == text:
                return recent
        if expected_version is not None and member.version != expected_version:
            raise MemberError("This member changed while you were writing; reload the page and add the note again.")
        note = StaffNote(member_id=member_id, author=actor.username, body=text, created_at=now)
        session.add(note)
        before = member.version
        stripe_store.bump_version(session, member_id)
        member.updated_at = now
        session.flush()
        session.refresh(member, ["version"])
        audit.record(session, actor=actor.username, action="member.note_added", member_id=member_id,
                     target_type="note", target_id=note.id, before={"version": before},
                     after={"version": member.version, "note": text})
        return note


def _note_text(body: str) -> str:
    """The note as it is stored, or a ``MemberError`` sentence."""
    text = (body or "").strip()
    if not text:
        raise MemberError("Write the note before saving it.")
    if "\x00" in text:
        # PostgreSQL cannot store a NUL in text, and the membership-change service refuses it:
        # refused the same way on both databases, before anything is written.
        raise MemberError("The note contains a NUL character, which cannot be stored; remove it and save again.")
    if len(text) > NOTE_MAX_CHARS:
        raise MemberError(f"A note can have at most {NOTE_MAX_CHARS} characters; this one has {len(text)}.")
    return text


def stripe_dashboard_url(object_id: str | None, *, test_mode: bool) -> str | None:
    """A link to a Stripe object in Stripe's dashboard (customers, invoices, charges...)."""
    if not object_id:
        return None
    base = "https://dashboard.stripe.com/test" if test_mode else "https://dashboard.stripe.com"
    kinds = {"cus_": "customers", "in_": "invoices", "ch_": "payments", "py_": "payments", "pi_": "payments",
             "sub_": "subscriptions", "re_": "refunds", "dp_": "disputes", "du_": "disputes"}
    for prefix, path in kinds.items():
        if object_id.startswith(prefix):
            return f"{base}/{path}/{object_id}"
    return None


def is_test_mode(api_key: str, api_base: str) -> bool:
    """True for a test-mode key or a local sandbox (links then point at Stripe's test dashboard)."""
    return not api_key.startswith(("sk_live_", "rk_live_")) or api_base.startswith(("http://127.0.0.1", "http://localhost"))


__all__ = ["MemberError", "MemberView", "add_note", "is_test_mode", "latest_subscriptions", "member_view", "search",
           "stripe_dashboard_url"]
