"""Invoices for subscriptions: periods, lines, prorations, payment attempts and the retry schedule.

Retry schedule (documented in docs/sandbox.md): after the first failed attempt of a renewal
invoice, Stripe-like automatic retries run 3, 5 and 7 days after that first failure (4 tries in
all). Hard declines (``lost_card``, ``stolen_card``) are not retried. When no retry is left, the
subscription is canceled (``cancellation_details.reason = payment_failed``) at the end of the
7-day window, or at once after the 4th failure.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any

from stripe_sandbox.api import Api, id_of, new_id
from stripe_sandbox.resources.payments import Attempt, charge_card, new_intent

DAY = 86400
RETRY_DAYS = (3, 5, 7)  # after the first failure
DUNNING_DAYS = RETRY_DAYS[-1]


# -- periods ----------------------------------------------------------------------------------
def next_period_end(start: int, recurring: dict[str, Any], anchor: int) -> int:
    """``start`` plus one interval, keeping the anchor's day of month (clamped) like Stripe."""
    interval, count = recurring["interval"], int(recurring.get("interval_count") or 1)
    if interval == "day":
        return start + count * DAY
    if interval == "week":
        return start + count * 7 * DAY
    months = count * (12 if interval == "year" else 1)
    s = datetime.fromtimestamp(start, UTC)
    a = datetime.fromtimestamp(anchor, UTC)
    total = s.year * 12 + (s.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(a.day, calendar.monthrange(year, month)[1])
    return int(datetime(year, month, day, a.hour, a.minute, a.second, tzinfo=UTC).timestamp())


def period_of(sub: dict[str, Any]) -> tuple[int, int]:
    item = sub["items"]["data"][0]
    return item["current_period_start"], item["current_period_end"]


def set_period(sub: dict[str, Any], start: int, end: int) -> None:
    for item in sub["items"]["data"]:
        item["current_period_start"], item["current_period_end"] = start, end


# -- invoices ---------------------------------------------------------------------------------
def new_invoice(api: Api, sub: dict[str, Any], *, billing_reason: str, at: int,
                period: tuple[int, int]) -> dict[str, Any]:
    cus = api.get(sub["customer"]) or {}
    seq = int(cus.get("next_invoice_sequence") or 1)
    if cus and not api.dry_run:
        cus["next_invoice_sequence"] = seq + 1
        api.save(cus)
    inv_id = new_id("in")
    return {
        "id": inv_id, "object": "invoice", "account_country": "US", "account_name": "Memberdesk Sandbox",
        "account_tax_ids": None, "amount_due": 0, "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": 0,
        "amount_shipping": 0, "application": None, "attempt_count": 0, "attempted": False, "auto_advance": True,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                          "status": None},
        "automatically_finalizes_at": None, "billing_reason": billing_reason,
        "collection_method": "charge_automatically", "confirmation_secret": None, "created": at,
        "currency": sub["currency"], "custom_fields": None, "customer": sub["customer"],
        "customer_address": cus.get("address"), "customer_email": cus.get("email"),
        "customer_name": cus.get("name"), "customer_phone": cus.get("phone"), "customer_shipping": None,
        "customer_tax_exempt": "none", "customer_tax_ids": [], "default_payment_method": None,
        "default_source": None, "default_tax_rates": [], "description": None, "discounts": [], "due_date": None,
        "effective_at": None, "ending_balance": None, "footer": None, "from_invoice": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/sandbox/{inv_id}", "invoice_pdf": None,
        "issuer": {"type": "self"}, "last_finalization_error": None, "latest_revision": None,
        "lines": {"object": "list", "data": [], "has_more": False, "url": f"/v1/invoices/{inv_id}/lines"},
        "livemode": False, "metadata": {}, "next_payment_attempt": None,
        "number": f"{cus.get('invoice_prefix') or 'SANDBOX'}-{seq:04d}", "on_behalf_of": None,
        "parent": {"quote_details": None, "type": "subscription_details",
                   "subscription_details": {"metadata": dict(sub.get("metadata") or {}), "subscription": sub["id"]}},
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "payments": {"object": "list", "data": [], "has_more": False,
                     "url": f"/v1/invoice_payments?invoice={inv_id}"},
        "period_end": period[1], "period_start": period[0], "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0, "receipt_number": None, "rendering": None,
        "shipping_cost": None, "shipping_details": None, "starting_balance": 0, "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "subtotal": 0, "subtotal_excluding_tax": 0, "test_clock": sub.get("test_clock"), "total": 0,
        "total_discount_amounts": [], "total_excluding_tax": 0, "total_pretax_credit_amounts": [],
        "total_taxes": [], "webhooks_delivered_at": at,
        "_sandbox": {"intent": None, "first_failed_at": None, "dunning_ends_at": None, "hard": False},
    }


def product_name(api: Api, price: dict[str, Any]) -> str:
    prod = api.get(id_of(price["product"]) or "")
    return (prod or {}).get("name") or price.get("nickname") or str(id_of(price["product"]))


def item_line(api: Api, inv: dict[str, Any], sub: dict[str, Any], item: dict[str, Any], period: tuple[int, int],
              *, amount: int | None = None, description: str | None = None) -> dict[str, Any]:
    price = item["price"]
    qty = int(item.get("quantity") or 1)
    amount = int(price["unit_amount"]) * qty if amount is None else amount
    return {
        "id": new_id("il"), "object": "line_item", "amount": amount, "currency": price["currency"],
        "description": description or f"{qty} × {product_name(api, price)} "
                                      f"(at {price['unit_amount']} {price['currency'].upper()} / {price['recurring']['interval']})",
        "discount_amounts": [], "discountable": True, "discounts": [], "invoice": inv["id"], "livemode": False,
        "metadata": dict(item.get("metadata") or {}),
        "parent": {"invoice_item_details": None, "type": "subscription_item_details",
                   "subscription_item_details": {"invoice_item": None, "proration": False,
                                                 "proration_details": {"credited_items": None},
                                                 "subscription": sub["id"], "subscription_item": item["id"]}},
        "period": {"end": period[1], "start": period[0]}, "pretax_credit_amounts": [],
        "pricing": {"price_details": {"price": price["id"], "product": id_of(price["product"])},
                    "type": "price_details", "unit_amount_decimal": str(price["unit_amount"])},
        "quantity": qty, "quantity_decimal": str(qty), "subscription": sub["id"], "subtotal": amount, "taxes": [],
    }


def proration_items(api: Api, sub: dict[str, Any], old_items: list[dict[str, Any]],
                    new_items: list[dict[str, Any]], at: int) -> list[dict[str, Any]]:
    """Invoice items crediting unused time on changed old items and charging the rest on new ones."""
    start, end = period_of(sub)
    if end <= start or at >= end:
        return []
    at = max(at, start)
    frac_num, frac_den = end - at, end - start
    old_by_id = {i["id"]: i for i in old_items}
    new_by_id = {i["id"]: i for i in new_items}
    out: list[dict[str, Any]] = []

    def ii(item: dict[str, Any], sign: int, what: str) -> dict[str, Any]:
        full = int(item["price"]["unit_amount"]) * int(item.get("quantity") or 1)
        gross = sign * round(full * frac_num / frac_den)
        # A classic-mode subscription (Stripe's default; ``proration_discounts=included``): the
        # proration's amount is already net of the subscription's discounts, which are named with
        # an amount of 0 (only flexible mode's ``itemized`` shows the gross and the discount).
        taken = discount_amounts(sub, gross, at)
        amount = gross - sum(d["amount"] for d in taken)
        named = [{"amount": 0, "discount": d["discount"]} for d in taken]
        day = datetime.fromtimestamp(at, UTC).strftime("%d %b %Y")
        return {
            "id": new_id("ii"), "object": "invoiceitem", "amount": amount, "currency": sub["currency"],
            "customer": sub["customer"], "date": at, "description":
                f"{what} time on {item.get('quantity') or 1} × {product_name(api, item['price'])} after {day}",
            "discountable": False, "discounts": [], "invoice": None, "livemode": False, "metadata": {},
            "parent": {"type": "subscription_details",
                       "subscription_details": {"subscription": sub["id"], "subscription_item": item["id"]}},
            "period": {"start": at, "end": end},
            "pricing": {"price_details": {"price": item["price"]["id"], "product": id_of(item["price"]["product"])},
                        "type": "price_details", "unit_amount_decimal": str(item["price"]["unit_amount"])},
            "proration": True, "proration_details": {"discount_amounts": named},
            "net_amount": amount,
            "quantity": int(item.get("quantity") or 1), "tax_rates": [], "test_clock": sub.get("test_clock"),
            "_sandbox": {"created": at},
        }

    for iid, old in old_by_id.items():
        new = new_by_id.get(iid)
        if new is None or new["price"]["id"] != old["price"]["id"] or new.get("quantity") != old.get("quantity"):
            out.append(ii(old, -1, "Unused"))
    for iid, new in new_by_id.items():
        before = old_by_id.get(iid)
        if before is None or new["price"]["id"] != before["price"]["id"] or new.get("quantity") != before.get("quantity"):
            out.append(ii(new, 1, "Remaining"))
    return [i for i in out if i["amount"] != 0]


def ii_line(inv: dict[str, Any], ii: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": new_id("il"), "object": "line_item", "amount": ii["amount"], "currency": ii["currency"],
        "description": ii["description"],
        "discount_amounts": list((ii.get("proration_details") or {}).get("discount_amounts") or []),
        "discountable": False, "discounts": [],
        "invoice": inv["id"], "livemode": False, "metadata": {},
        "parent": {"type": "invoice_item_details", "subscription_item_details": None,
                   "invoice_item_details": {"invoice_item": ii["id"], "proration": bool(ii.get("proration")),
                                            "proration_details": {"credited_items": None},
                                            "subscription": sub_of_ii(ii)}},
        "period": dict(ii["period"]), "pretax_credit_amounts": [], "pricing": ii["pricing"],
        "quantity": ii["quantity"], "subscription": sub_of_ii(ii), "subtotal": ii["amount"], "taxes": [],
    }


def sub_of_ii(ii: dict[str, Any]) -> str | None:
    return ((ii.get("parent") or {}).get("subscription_details") or {}).get("subscription")


def pending_items(api: Api, sub: dict[str, Any]) -> list[dict[str, Any]]:
    """The invoice items ``sub``'s next invoice takes: those made for it, and the customer's that
    name no subscription (Stripe adds a customer's pending items to the next invoice made for them)."""
    mine = api.select("invoiceitem", [("ref = ?", [sub["id"]])])
    loose = [ii for ii in api.select("invoiceitem", [("customer = ?", [id_of(sub["customer"])]), ("ref IS NULL", [])])
             if ii["currency"] == sub["currency"]]
    return [ii for ii in mine + loose if not ii.get("invoice")]


def add_lines(api: Api, inv: dict[str, Any], sub: dict[str, Any], invoice_items: list[dict[str, Any]],
              period: tuple[int, int] | None, *, trial: bool = False) -> None:
    """Pending invoice items first, then one line per subscription item for ``period``."""
    for ii in invoice_items:
        inv["lines"]["data"].append(ii_line(inv, ii))
        ii["invoice"] = inv["id"]
        api.save(ii)
    if period is not None:
        for item in sub["items"]["data"]:
            if trial:
                name = product_name(api, item["price"])
                line = item_line(api, inv, sub, item, period, amount=0, description=f"Trial period for {name}")
            else:
                line = item_line(api, inv, sub, item, period)
            if line["discountable"] and line["amount"]:
                line["discount_amounts"] = discount_amounts(sub, line["amount"], period[0])
            inv["lines"]["data"].append(line)
    subtotal = sum(line["amount"] for line in inv["lines"]["data"])
    by_discount: dict[str, int] = {}
    for line in inv["lines"]["data"]:
        for d in line.get("discount_amounts") or []:
            by_discount[d["discount"]] = by_discount.get(d["discount"], 0) + int(d["amount"])
        line["pretax_credit_amounts"] = [{"amount": d["amount"], "credit_balance_transaction": None,
                                          "discount": d["discount"], "type": "discount"}
                                         for d in line.get("discount_amounts") or []]
    total = subtotal - sum(by_discount.values())
    inv.update(subtotal=subtotal, subtotal_excluding_tax=subtotal, total=total, total_excluding_tax=total,
               total_discount_amounts=[{"amount": a, "discount": d} for d, a in by_discount.items()],
               total_pretax_credit_amounts=[{"amount": a, "credit_balance_transaction": None, "discount": d,
                                             "type": "discount"} for d, a in by_discount.items()])
    due = max(total, 0)
    inv.update(amount_due=due, amount_remaining=due)


def discount_amounts(sub: dict[str, Any], amount: int, at: int) -> list[dict[str, Any]]:
    """Stripe's ``discount_amounts`` of an amount billed on ``sub`` at ``at``: each percent-off
    discount in force then takes its share (a credit for unused time is reduced alike, as the member
    paid the discounted price). Amount-off coupons are not modelled (the demo sells none, and
    Memberdesk makes none)."""
    out = []
    for d in sub.get("discounts") or []:
        if not isinstance(d, dict):
            continue
        coupon = (d.get("source") or {}).get("coupon") or d.get("coupon") or {}
        percent = coupon.get("percent_off")
        if percent and (d.get("end") is None or d["end"] > at) and (d.get("start") or 0) <= at:
            out.append({"amount": round(amount * float(percent) / 100), "discount": d["id"]})
    return out


def apply_balance(api: Api, inv: dict[str, Any]) -> None:
    """Settle the invoice against the customer's balance (negative = credit), as Stripe does: a
    credit lowers the amount due, a negative total (a downgrade's proration) becomes credit."""
    cus = api.get(inv["customer"])
    balance = int((cus or {}).get("balance") or 0)
    net = inv["total"] + balance
    due = max(0, net)
    inv.update(starting_balance=balance, ending_balance=min(0, net), amount_due=due, amount_remaining=due)
    if cus is not None and cus.get("balance") != min(0, net):
        previous = {"balance": cus.get("balance")}
        cus["balance"] = min(0, net)
        api.save(cus)
        api.emit("customer.updated", cus, previous)


def finalize(api: Api, inv: dict[str, Any], at: int) -> None:
    inv["status"] = "open"
    inv["status_transitions"]["finalized_at"] = at
    inv["effective_at"] = at
    apply_balance(api, inv)
    api.save(inv)
    api.emit("invoice.finalized", inv)


def mark_paid(api: Api, inv: dict[str, Any], at: int, *, out_of_band: bool = False) -> None:
    inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0, next_payment_attempt=None)
    inv["_sandbox"]["paid_out_of_band"] = out_of_band
    inv["status_transitions"]["paid_at"] = at
    for pay in inv["payments"]["data"]:
        if pay["status"] == "open":
            pay.update(status="paid", amount_paid=pay["amount_requested"])
            pay["status_transitions"]["paid_at"] = at
            api.save(pay)
    api.save(inv)
    api.emit("invoice.paid", inv)
    api.emit("invoice.payment_succeeded", inv)


def attempt(api: Api, inv: dict[str, Any], sub: dict[str, Any] | None, *, at: int,
            payment_method: str | None = None) -> Attempt | None:
    """One payment attempt of an open invoice. Returns None when nothing had to be charged."""
    if inv["amount_due"] == 0:
        mark_paid(api, inv, at)
        return None
    cus = api.get(inv["customer"]) or {}
    pm = (payment_method or (sub or {}).get("default_payment_method")
          or (cus.get("invoice_settings") or {}).get("default_payment_method"))
    intent = api.get(inv["_sandbox"]["intent"]) if inv["_sandbox"].get("intent") else None
    if intent is None:
        intent = new_intent(api, amount=inv["amount_due"], currency=inv["currency"], customer=inv["customer"],
                            pm=pm, description=_describe(inv["billing_reason"]))
        inv["_sandbox"]["intent"] = intent["id"]
        pay = {"id": new_id("inpay"), "object": "invoice_payment", "amount_paid": None,
               "amount_requested": inv["amount_due"], "created": at, "currency": inv["currency"],
               "invoice": inv["id"], "is_default": True, "livemode": False,
               "payment": {"type": "payment_intent", "payment_intent": intent["id"], "charge": None},
               "status": "open", "status_transitions": {"canceled_at": None, "paid_at": None}}
        api.save(pay)
        inv["payments"]["data"] = [pay]
    result = charge_card(api, intent, pm)
    inv["attempt_count"] += 1
    inv["attempted"] = True
    if result.charge is not None:
        for pay in inv["payments"]["data"]:
            pay["payment"]["charge"] = result.charge["id"]
            api.save(pay)
    if result.ok:
        mark_paid(api, inv, at)
        return result
    api.save(inv)
    return result


def schedule_retry(api: Api, inv: dict[str, Any], result: Attempt, at: int) -> None:
    """After a failed automatic attempt: the next retry time, or none (then dunning ends)."""
    state = inv["_sandbox"]
    if state.get("first_failed_at") is None:
        state["first_failed_at"] = at
        state["dunning_ends_at"] = at + DUNNING_DAYS * DAY
    hard = bool(result.decline and result.decline.hard)
    state["hard"] = state.get("hard") or hard
    retries_done = inv["attempt_count"] - 1
    if hard or retries_done >= len(RETRY_DAYS):
        inv["next_payment_attempt"] = None
        if retries_done >= len(RETRY_DAYS):
            state["dunning_ends_at"] = at
    else:
        inv["next_payment_attempt"] = state["first_failed_at"] + RETRY_DAYS[retries_done] * DAY
    api.save(inv)
    api.emit("invoice.payment_failed", inv)
    api.emit("invoice.updated", inv, {"attempt_count": inv["attempt_count"] - 1})


def set_status(api: Api, sub: dict[str, Any], status: str, extra_previous: dict[str, Any] | None = None) -> None:
    if sub["status"] == status and not extra_previous:
        return
    previous = dict(extra_previous or {})
    if sub["status"] != status:
        previous["status"] = sub["status"]
    sub["status"] = status
    api.save(sub)
    api.emit("customer.subscription.updated", sub, previous)


def _describe(reason: str) -> str:
    return {"subscription_create": "Subscription creation", "subscription_cycle": "Subscription update",
            "subscription_update": "Subscription update"}.get(reason, "Payment for invoice")
