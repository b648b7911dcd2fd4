"""Columns derived from what several Stripe objects say, the same whatever order they arrive in.

Five columns depend on more than the one object that writes their row:

- ``payments.invoice_id``. The older charge names its invoice (``charge.invoice``: the invoice is its
  parent, so the charge handler links it). Today's charge names none; its invoice names its payment
  intents / charges instead, kept in ``invoice_payment_refs``. A payment is linked to the invoice
  naming its payment intent (else its charge). A link is never undone: Stripe never moves a payment
  to another invoice, and an older-shape invoice names only its latest charge.
- ``payments.is_renewal``: its invoice's ``billing_reason`` is ``subscription_cycle``.
- ``payments.attempt_number``: its rank among the attempts on the same invoice (else on the same
  payment intent) ordered by (created, charge id); ``number_attempts`` is the one definition.
- ``subscriptions.past_due_since``: the first failed attempt on the past-due subscription's oldest
  open invoice (``_settle_past_due``).
- ``payment_methods.is_default``: the card is its member's ``stripe_default_payment_method_id``
  (the customer's ``invoice_settings.default_payment_method``) and is still attached.

Handlers only note what they wrote (``note_*``); ``settle`` then recomputes those columns for every
row the noted writes can affect, with a few set-based reads and one write per kind. ``apply``
settles after each object and ``apply_many`` once per page (``collecting``), so the columns are a
function of the stored rows alone: the same for every delivery order, one by one or a page at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from core.models import Base

KEY = "memberdesk_derived_pending"
RENEWAL = "subscription_cycle"


@dataclass
class Pending:
    invoices: set[int] = field(default_factory=set)  # invoices whose refs or billing reason changed
    refs: set[str] = field(default_factory=set)  # payment intent / charge ids of payments written
    members: set[int] = field(default_factory=set)  # members whose default card changed
    cards: set[int] = field(default_factory=set)  # payment methods attached, moved or re-attached
    subscriptions: set[int] = field(default_factory=set)  # whose past-due start may have moved


def _t(name: str) -> Table:
    return Base.metadata.tables[name]


@contextmanager
def collecting(session: Session) -> Iterator[Pending]:
    """Collect the notes of the writes inside, then settle them (only if nothing raised). Nested
    use joins the outer collection, which settles once at its end."""
    outer = session.info.get(KEY)
    if outer is not None:
        yield outer
        return
    pending = session.info[KEY] = Pending()
    try:
        yield pending
        settle(session, pending)
    finally:
        session.info.pop(KEY, None)


def _pending(session: Session) -> Pending:
    pending: Pending | None = session.info.get(KEY)
    if pending is None:
        raise RuntimeError("stripe_store writes must run inside derived.collecting (apply or apply_many)")
    return pending


def note_invoice(session: Session, invoice_id: int) -> None:
    _pending(session).invoices.add(invoice_id)


def note_payment(session: Session, charge_id: str, payment_intent_id: str | None) -> None:
    _pending(session).refs.update(r for r in (charge_id, payment_intent_id) if r)


def note_member_default(session: Session, member_id: int) -> None:
    _pending(session).members.add(member_id)


def note_card(session: Session, payment_method_id: int) -> None:
    _pending(session).cards.add(payment_method_id)


def note_subscription(session: Session, subscription_id: int | None) -> None:
    if subscription_id is not None:
        _pending(session).subscriptions.add(subscription_id)


def settle(session: Session, pending: Pending) -> None:
    if pending.invoices or pending.refs:
        pending.subscriptions |= _settle_payments(session, pending.invoices, pending.refs)
    if pending.members or pending.cards:
        _settle_defaults(session, pending.members, pending.cards)
    if pending.subscriptions:
        _settle_past_due(session, pending.subscriptions)


def number_attempts(payments: Iterable[dict[str, Any]]) -> None:
    """Set ``attempt_number`` on each payment dict (keys ``invoice_id``, ``stripe_payment_intent_id``,
    ``stripe_charge_id``, ``created_at``): 1, 2, ... per invoice, else per payment intent, in
    (created, charge id) order. The dicts must hold every attempt of the groups they belong to."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for pay in payments:
        if pay["invoice_id"] is not None:
            key: tuple[str, Any] = ("invoice", pay["invoice_id"])
        elif pay["stripe_payment_intent_id"]:
            key = ("intent", pay["stripe_payment_intent_id"])
        else:
            key = ("charge", pay["stripe_charge_id"])
        groups[key].append(pay)
    for attempts in groups.values():
        attempts.sort(key=lambda a: (a["created_at"], a["stripe_charge_id"] or ""))
        for n, pay in enumerate(attempts, 1):
            pay["attempt_number"] = n


def _settle_payments(session: Session, invoice_ids: set[int], refs: set[str]) -> set[int]:
    """Link, flag and number the attempts; returns the subscriptions of the invoices involved."""
    ipr, p, inv = _t("invoice_payment_refs"), _t("payments"), _t("invoices")
    # What the invoices say: payment ref -> invoice, for the noted invoices and the noted payments.
    # Should two invoices name one ref (Stripe never does), the lowest Stripe invoice id wins.
    claims = session.execute(
        select(ipr.c.payment_ref, ipr.c.invoice_id, inv.c.stripe_invoice_id, inv.c.billing_reason)
        .join(inv, inv.c.id == ipr.c.invoice_id)
        .where(or_(ipr.c.invoice_id.in_(invoice_ids), ipr.c.payment_ref.in_(refs)))).all()
    reasons: dict[int, str | None] = {}
    by_ref: dict[str, tuple[str, int]] = {}
    for ref, inv_id, stripe_invoice, reason in claims:
        reasons[inv_id] = reason
        if ref not in by_ref or (stripe_invoice or "") < by_ref[ref][0]:
            by_ref[ref] = (stripe_invoice or "", inv_id)
    wanted = sorted(refs | by_ref.keys())
    base = (select(p.c.id, p.c.invoice_id, p.c.stripe_payment_intent_id, p.c.stripe_charge_id, p.c.created_at,
                   p.c.attempt_number, p.c.is_renewal, inv.c.billing_reason)
            .outerjoin(inv, inv.c.id == p.c.invoice_id))
    rows: dict[int, dict[str, Any]] = {}

    def read(where: Any) -> None:
        for r in session.execute(base.where(where)).mappings():
            if r["invoice_id"] is not None:
                reasons[r["invoice_id"]] = r["billing_reason"]
            rows.setdefault(r["id"], dict(r))

    # Every attempt the links can touch: those named, and those already on the noted invoices.
    read(or_(p.c.stripe_payment_intent_id.in_(wanted), p.c.stripe_charge_id.in_(wanted),
             p.c.invoice_id.in_(invoice_ids)))
    before = {pay_id: (r["invoice_id"], r["attempt_number"], r["is_renewal"]) for pay_id, r in rows.items()}
    for r in rows.values():
        claim = by_ref.get(r["stripe_payment_intent_id"] or "") or by_ref.get(r["stripe_charge_id"] or "")
        if claim is not None:
            r["invoice_id"] = claim[1]
    # The rest of the invoices these attempts belong to, so each is numbered among all its attempts.
    others = {r["invoice_id"] for r in rows.values() if r["invoice_id"] is not None} - invoice_ids
    if others:
        read(p.c.invoice_id.in_(sorted(others)))
        for pay_id, r in rows.items():
            before.setdefault(pay_id, (r["invoice_id"], r["attempt_number"], r["is_renewal"]))
    number_attempts(rows.values())
    changes = []
    for pay_id, r in rows.items():
        renewal = r["invoice_id"] is not None and reasons.get(r["invoice_id"]) == RENEWAL
        if before[pay_id] != (r["invoice_id"], r["attempt_number"], renewal):
            changes.append({"pay_id": pay_id, "inv_id": r["invoice_id"], "n": r["attempt_number"],
                            "renewal": renewal})
    if changes:
        session.execute(update(p).where(p.c.id == bindparam("pay_id"))
                        .values(invoice_id=bindparam("inv_id"), attempt_number=bindparam("n"),
                                is_renewal=bindparam("renewal")), changes)
    touched = sorted(invoice_ids | {r["invoice_id"] for r in rows.values() if r["invoice_id"] is not None})
    if not touched:
        return set()
    return {i for i in session.scalars(select(inv.c.subscription_id).where(inv.c.id.in_(touched))) if i is not None}


def _settle_past_due(session: Session, subscription_ids: set[int]) -> None:
    """``subscriptions.past_due_since`` of a past-due subscription: when the first automatic attempt
    on its oldest unpaid (``open``) invoice failed, the moment Stripe turns a subscription
    past_due. Read from Stripe's charges, not from the time we saw the status change, so an ordered
    pass, any shuffled or repeated delivery and a backfill all give the same date. Until the failed
    charge is stored, the event's time stays (``rules.past_due_since``)."""
    sub, inv, p = _t("subscriptions"), _t("invoices"), _t("payments")
    first_failure = (select(func.min(p.c.created_at)).select_from(p.join(inv, inv.c.id == p.c.invoice_id))
                     .where(inv.c.subscription_id == sub.c.id, inv.c.status == "open", p.c.status == "failed")
                     .scalar_subquery())
    ids = sorted(subscription_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        found = session.execute(select(sub.c.id, sub.c.past_due_since, first_failure.label("since"))
                                .where(sub.c.id.in_(chunk), sub.c.status == "past_due")).all()
        changes = [{"sub_id": i, "since": since} for i, current, since in found if since is not None and since != current]
        if changes:
            session.execute(update(sub).where(sub.c.id == bindparam("sub_id"))
                            .values(past_due_since=bindparam("since")), changes)


def _settle_defaults(session: Session, member_ids: set[int], card_ids: set[int]) -> None:
    pm, m = _t("payment_methods"), _t("members")
    default = select(m.c.stripe_default_payment_method_id).where(m.c.id == pm.c.member_id).scalar_subquery()
    flag = case((and_(pm.c.detached_at.is_(None), pm.c.stripe_payment_method_id == default), True), else_=False)
    session.execute(update(pm).where(or_(pm.c.member_id.in_(sorted(member_ids)), pm.c.id.in_(sorted(card_ids))),
                                     pm.c.is_default != flag).values(is_default=flag))
