"""Change tier or price: now with proration (the amount comes from Stripe's invoice preview and is
invoiced at once) or from the next renewal (no proration, nothing charged now).

The preview pins ``proration_date`` and the change uses the same one, so the amount charged is
the amount shown.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from core.changes import parse
from core.changes.actions.base import Ctx, Plan
from core.changes.actions.lifecycle import _date, _stripe_sub, _sub, _SubscriptionAction
from core.changes.errors import ChangeRefused
from core.changes.model import Preview
from core.changes.state import mrr_of
from core.models import Price, Subscription, SubscriptionItem, Tier
from core.models.enums import SubscriptionStatus
from core.money import format_money
from core.permissions import Permission
from core.timeutil import ensure_aware, from_epoch

S = SubscriptionStatus

# A preview's proration moment is honoured this long: the amount an agent confirms is the amount
# they read, but not one read long ago (Stripe refuses a moment outside the current period).
PREVIEW_HOLDS_SECONDS = 3600


def _proration_moment(raw: Any, now: datetime) -> int:
    """The preview's pinned moment when the confirmation carries one, else now."""
    at = int(ensure_aware(now).timestamp())
    if raw in (None, ""):
        return at
    pinned = parse.whole_number(raw, "proration date", low=0, high=2**40)
    if pinned < at - PREVIEW_HOLDS_SECONDS:
        raise ChangeRefused("This preview is more than an hour old; preview the change again.")
    if pinned > at + 300:
        raise ChangeRefused("The proration date is in the future; preview the change again.")
    return pinned


class ChangePrice(_SubscriptionAction, name="change_price", title="Change tier or price",
                  permission=Permission.CHANGE_TIER):
    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        sub = _sub(ctx)
        if sub.status not in {S.ACTIVE, S.TRIALING, S.PAST_DUE}:
            raise ChangeRefused(f"A {sub.status.replace('_', ' ')} membership cannot change tier; "
                                "reactivate it on the new price instead.")
        if sub.pause_behavior:
            raise ChangeRefused("Collection is paused; resume it before changing the tier.")
        sid = _stripe_sub(ctx, sub)
        if raw.get("price_id") in (None, ""):
            raise ChangeRefused("Choose the new price.")
        price = ctx.session.get(Price, parse.whole_number(raw.get("price_id"), "new price", low=1, high=2**62))
        if price is None or not price.stripe_price_id:
            raise ChangeRefused("This price is not in Stripe.")
        if not price.active:
            raise ChangeRefused("This price is no longer sold; choose a current one.")
        if price.id == sub.price_id:
            raise ChangeRefused("The member is already on this price.")
        if price.currency != sub.currency:
            raise ChangeRefused(f"The membership is billed in {sub.currency}; choose a {sub.currency} price "
                                f"(Stripe cannot switch a subscription to {price.currency}).")
        when = parse.choice(raw.get("when"), ["now", "period_end"], "when the change applies")
        current = ctx.session.get(Price, sub.price_id) if sub.price_id else None
        # Stripe starts a new period at once on a change of billing interval, and invoices it then,
        # whatever the proration setting: "from the next renewal" would charge now, not nothing.
        new_cycle = current is not None and (current.interval, current.interval_count or 1) != (
            price.interval, price.interval_count or 1)
        if current is not None and new_cycle and when == "period_end":
            raise ChangeRefused(f"A change from {current.interval}ly to {price.interval}ly billing starts a new period "
                                "at once in Stripe and bills it then; choose Now.")
        item = ctx.session.query(SubscriptionItem).filter_by(subscription_id=sub.id).order_by(SubscriptionItem.id).first()
        if item is None or not item.stripe_item_id:
            raise ChangeRefused("This membership's items are not synced yet; sync the member first.")
        # Only a change now is prorated: from the renewal, nothing is, and no moment is pinned.
        proration_date = _proration_moment(raw.get("proration_date") if when == "now" else None, ctx.now)
        behavior = "always_invoice" if when == "now" else "none"
        from core.stripe_gateway import GatewayError, writes

        try:
            inv = writes.preview_price_change(
                ctx.client, customer_id=ctx.member.stripe_customer_id or "", subscription_id=sid,
                item_id=item.stripe_item_id, price_id=price.stripe_price_id, proration_behavior=behavior,
                proration_date=proration_date)
        except GatewayError as exc:
            raise ChangeRefused(exc.sentence) from None
        tier = ctx.session.get(Tier, price.tier_id)
        # An interval change bills the whole new period at once, less the unused time's credit: the
        # invoice's total, not its prorations alone (which are only that credit).
        amount = (_invoice_total(inv) if new_cycle else _proration_total(inv)) if when == "now" else 0
        # Items already waiting for the member's next invoice (a one-off charge or credit added in
        # Stripe) go onto the invoice the switch makes at once, and are charged with it.
        pending = _pending_items_total(inv) if when == "now" and not new_cycle and _has_prorations(inv) else 0
        amount += pending
        label = f"{tier.name if tier else 'tier'} at {format_money(price.unit_amount, price.currency)}/{price.interval}"
        period_end = sub.current_period_end
        if when == "now" and sub.status == S.TRIALING:
            # Stripe prorates nothing in a trial and invoices nothing at once: the preview's invoice
            # is the first one after the trial. The form said "$30.00 charged now" and Stripe
            # charged nothing.
            amount, kind = 0, "charge"
            ends = sub.trial_end or sub.current_period_end
            summary = [f"Switches to {label} now; the trial goes on and nothing is charged now.",
                       f"The first invoice, at the new price, is when the trial ends on {_date(ends)}."]
        elif when == "now":
            money = functools.partial(format_money, currency=price.currency)
            summary = [f"Switches to {label} now.",
                       f"Stripe prorates the rest of this period: {money(abs(amount))} "
                       f"{'charged now' if amount >= 0 else 'credited to the next invoice'}."]
            credit = _credit_used(inv, amount) if not new_cycle else 0
            if pending:
                def signed(x: int) -> str:
                    return money(x) if x >= 0 else f"a credit of {money(-x)}"

                due = amount - credit
                summary[1] = (f"Stripe prorates the rest of this period: {signed(amount - pending)}, and adds "
                              f"{signed(pending)} already waiting for the member's next invoice" + (
                                  f"; the member's credit balance pays {money(credit)}, {money(due)} charged now."
                                  if credit else f": {money(due)} charged now." if due >= 0
                                  else f": {money(-due)} credited to the next invoice."))
            elif credit:
                # The proration is invoiced at once and Stripe pays it from the member's credit
                # first: "$20.00 charged now" was shown where Stripe charged nothing.
                summary[1] = (f"Stripe prorates the rest of this period: {money(amount)}, "
                              f"of which the member's credit balance pays {money(credit)}; "
                              f"{money(amount - credit)} charged now.")
            amount -= credit
            kind = "charge" if amount >= 0 else "credit"
            if new_cycle:
                period_end = _new_period_end(inv) or period_end
                summary.append(f"A new {price.interval}ly period starts now and ends on {_date(period_end)}.")
        else:
            kind = "charge"
            # The tier changes now: "from the next renewal" read as if it waited, and a downgraded
            # member lost the tier they had just paid for without a word.
            summary = [f"Switches to {label} now (the new tier from this moment); nothing is charged or "
                       "credited now.",
                       f"The new price is billed from the renewal on {_date(sub.current_period_end)}."]
            if current is not None and price.unit_amount < current.unit_amount:
                summary.append(f"The days left of this period at {format_money(current.unit_amount, current.currency)}/"
                               f"{current.interval} are not credited (choose Now, prorated to credit them).")
        if sub.cancel_at_period_end:
            # Stripe keeps the cancellation through a change of price: a member charged for an
            # upgrade still leaves at the period's end, and the preview did not say so.
            summary.append(f"The membership is still set to cancel on {_date(sub.current_period_end)}; this change "
                           "does not undo that (undo the cancellation first if the member is staying).")
        discount = _discount_sentence(sub, ctx.now)
        if discount:
            # The MRR after the change is net of the discount: "¥1,200/month" beside "MRR ¥960" with no word.
            summary.append(discount)
        return Plan(
            params={"price_id": price.id, "when": when, "proration_date": proration_date},
            stripe_ids={"subscription": sid, "item": item.stripe_item_id, "price": price.stripe_price_id},
            preview=Preview(self.name, summary, amount_minor=abs(amount), amount_kind=kind, currency=price.currency,
                            new_period_end=period_end, mrr_before_minor=mrr_of(ctx.session, sub, at=ctx.now),
                            mrr_after_minor=mrr_of(ctx.session, sub, price=price, at=ctx.now),
                            pinned={"proration_date": proration_date} if when == "now" else {}))

    def target(self, plan: Plan) -> dict[str, Any]:
        now = plan.params["when"] == "now"
        params: dict[str, Any] = {
            "items": [{"id": plan.stripe_ids["item"], "price": plan.stripe_ids["price"]}],
            "proration_behavior": "always_invoice" if now else "none",
        }
        if now:
            params["proration_date"] = plan.params["proration_date"]
            params["payment_behavior"] = "error_if_incomplete"  # a declined card leaves nothing changed
        return params

    def matches(self, obj: dict[str, Any], plan: Plan) -> bool:
        for item in (obj.get("items") or {}).get("data") or []:
            price = item.get("price") or {}
            if item.get("id") == plan.stripe_ids["item"]:
                return bool((price.get("id") if isinstance(price, dict) else price) == plan.stripe_ids["price"])
        return False


def _discount_sentence(sub: Subscription, now: datetime) -> str | None:
    """The member's recurring discount, when one applies now: it carries over to the new price (a
    once-only discount is not in MRR)."""
    if sub.discount_duration == "once" or (sub.discount_end is not None and ensure_aware(sub.discount_end) <= now):
        return None
    if sub.discount_percent_off:
        what = f"{float(sub.discount_percent_off):g}% discount"
    elif sub.discount_amount_off:
        what = f"discount of {format_money(int(sub.discount_amount_off), sub.currency)}"
    else:
        return None
    until = f" until {_date(sub.discount_end)}" if sub.discount_end is not None else ""
    return f"The member's {what} applies to the new price too{until}; the MRR shown is after it."


def _new_period_end(invoice: dict[str, Any]) -> datetime | None:
    """The end of the period the preview's subscription line bills (the latest line period end)."""
    ends = [int(line["period"]["end"]) for line in (invoice.get("lines") or {}).get("data") or []
            if isinstance(line.get("period"), dict) and line["period"].get("end")]
    return from_epoch(max(ends)) if ends else None


def _invoice_total(invoice: dict[str, Any]) -> int:
    """What the invoice charges now (``amount_due``: after the customer's credit), or its negative
    total when it is a credit."""
    total, due = invoice.get("total"), invoice.get("amount_due")
    if total is not None and int(total) < 0:
        return int(total)
    return int(due if due is not None else total or 0)


def _credit_used(invoice: dict[str, Any], charge: int) -> int:
    """How much of a ``charge`` of prorations the customer's credit balance pays (Stripe applies the
    balance, ``starting_balance`` < 0, to the invoice it creates at once)."""
    if charge <= 0 or not _has_prorations(invoice):  # without proration lines the amount is amount_due already
        return 0
    balance = int(invoice.get("starting_balance") or 0)
    return min(charge, -balance) if balance < 0 else 0


def _has_prorations(invoice: dict[str, Any]) -> bool:
    return any(_is_proration(line) for line in (invoice.get("lines") or {}).get("data") or [])


def _is_proration(line: dict[str, Any]) -> bool:
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details")
    return bool((details or {}).get("proration") if details else line.get("proration"))


def _pending_items_total(invoice: dict[str, Any]) -> int:
    """The invoice items on the preview that are not prorations: pending items Stripe adds to the
    invoice (net of their discounts)."""
    total = 0
    for line in (invoice.get("lines") or {}).get("data") or []:
        parent = line.get("parent") or {}
        item = parent.get("type") == "invoice_item_details" if parent else line.get("type") == "invoiceitem"
        if item and not _is_proration(line):
            total += int(line.get("amount") or 0) - sum(int(d.get("amount") or 0)
                                                        for d in line.get("discount_amounts") or [])
    return total


def _proration_total(invoice: dict[str, Any]) -> int:
    """What the switch costs now: the preview's proration lines (today's or the older shape)."""
    lines = (invoice.get("lines") or {}).get("data") or []
    total, seen = 0, False
    for line in lines:
        if _is_proration(line):
            # A line's amount is before discounts: a member on 20 % off was shown and charged the
            # full proration (Stripe takes the line's discount_amounts off the invoice).
            total += int(line.get("amount") or 0) - sum(int(d.get("amount") or 0)
                                                        for d in line.get("discount_amounts") or [])
            seen = True
    return total if seen else _invoice_total(invoice)
