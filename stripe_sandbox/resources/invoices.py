"""Invoices: list/retrieve (first 10 lines embedded, the rest paged), pay now, void, mark
uncollectible, invoice payments, invoice items, and ``create_preview`` for proration previews.

A preview runs the real update (or creation) inside a savepoint that is rolled back, with charging
switched off, so the amounts are exactly the ones the real call would produce for the same
``proration_date``.
"""

from __future__ import annotations

from typing import Any

from stripe_sandbox import billing
from stripe_sandbox.api import Api, KeepAndFail, new_id, public
from stripe_sandbox.errors import invalid, missing_param
from stripe_sandbox.forms import metadata_update, to_bool, to_int
from stripe_sandbox.resources.payments import card_error

EMBEDDED_LINES = 10


def render_invoice(inv: dict[str, Any]) -> dict[str, Any]:
    lines = inv.get("lines") or {"data": []}
    data = lines.get("data") or []
    if len(data) <= EMBEDDED_LINES and not lines.get("has_more"):
        return inv
    out = dict(inv)
    out["lines"] = {**lines, "data": data[:EMBEDDED_LINES], "has_more": True,
                    "total_count": lines.get("total_count", len(data))}
    return out


def register(api: Api) -> None:
    inv = Invoices(api)
    api.route("GET", "/v1/invoices", inv.list)
    api.route("POST", "/v1/invoices/create_preview", inv.preview)
    api.route("GET", "/v1/invoices/{id}", lambda p, id: api.load(id, "invoice"))
    api.route("POST", "/v1/invoices/{id}", inv.update)
    api.route("GET", "/v1/invoices/{id}/lines", inv.lines)
    api.route("POST", "/v1/invoices/{id}/pay", inv.pay)
    api.route("POST", "/v1/invoices/{id}/void", inv.void)
    api.route("POST", "/v1/invoices/{id}/mark_uncollectible", inv.mark_uncollectible)
    api.route("GET", "/v1/invoice_payments", inv.list_payments)
    api.route("GET", "/v1/invoice_payments/{id}", lambda p, id: api.load(id, "invoice_payment"))
    api.route("GET", "/v1/invoiceitems", inv.list_items)
    api.route("POST", "/v1/invoiceitems", inv.create_item)
    api.route("GET", "/v1/invoiceitems/{id}", lambda p, id: api.load(id, "invoiceitem"))


class Invoices:
    def __init__(self, api: Api) -> None:
        self.api = api

    def list(self, p: dict[str, Any]) -> dict[str, Any]:
        where: list[tuple[str, list[Any]]] = []
        if p.get("customer"):
            where.append(("customer = ?", [p["customer"]]))
        if p.get("subscription"):
            where.append(("ref = ?", [p["subscription"]]))
        if p.get("status"):
            where.append(("status = ?", [p["status"]]))
        return self.api.list("invoice", p, "/v1/invoices", where)

    def lines(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        inv = self.api.load(id, "invoice")
        data = inv["lines"]["data"]
        limit = to_int(p.get("limit", 10), "limit")
        if not 1 <= limit <= 100:
            raise invalid("Invalid limit: must be between 1 and 100", param="limit")
        ids = [line["id"] for line in data]
        start, stop = 0, len(data)
        if p.get("starting_after"):
            if p["starting_after"] not in ids:
                raise invalid(f"No such line item: '{p['starting_after']}'", param="starting_after",
                              code="resource_missing")
            start = ids.index(p["starting_after"]) + 1
            page = data[start:start + limit]
            more = start + limit < len(data)
        elif p.get("ending_before"):
            if p["ending_before"] not in ids:
                raise invalid(f"No such line item: '{p['ending_before']}'", param="ending_before",
                              code="resource_missing")
            stop = ids.index(p["ending_before"])
            page = data[max(0, stop - limit):stop]
            more = stop - limit > 0
        else:
            page = data[:limit]
            more = limit < len(data)
        return {"object": "list", "data": page, "has_more": more, "url": f"/v1/invoices/{id}/lines"}

    def update(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        inv = self.api.load(id, "invoice")
        previous = {}
        if "metadata" in p:
            previous["metadata"] = inv.get("metadata")
            inv["metadata"] = metadata_update(inv.get("metadata"), p["metadata"])
        if "description" in p:
            previous["description"] = inv.get("description")
            inv["description"] = p["description"] or None
        if "auto_advance" in p:
            previous["auto_advance"] = inv.get("auto_advance")
            inv["auto_advance"] = to_bool(p["auto_advance"], "auto_advance")
        self.api.save(inv)
        self.api.emit("invoice.updated", inv, previous)
        return inv

    def _sub(self, inv: dict[str, Any]) -> dict[str, Any] | None:
        sub_id = ((inv.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        return self.api.get(sub_id) if sub_id else None

    def pay(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        api = self.api
        inv = api.load(id, "invoice")
        now = api.now(inv["customer"])
        if inv["status"] == "paid":
            raise invalid("Invoice is already paid.")
        if inv["status"] == "void":
            raise invalid("This invoice is void and cannot be paid.")
        if inv["status"] == "draft":
            billing.finalize(api, inv, now)
        sub = self._sub(inv)
        from stripe_sandbox.resources.subscriptions import after_payment
        if to_bool(p.get("paid_out_of_band", False), "paid_out_of_band"):
            billing.mark_paid(api, inv, now, out_of_band=True)
            after_payment(api, sub, True)
            return inv
        pm = None
        if p.get("payment_method"):
            from stripe_sandbox.resources.catalog import Catalog
            pm = Catalog(api).resolve_pm(p["payment_method"], param="payment_method")["id"]
        result = billing.attempt(api, inv, sub, at=now, payment_method=pm)
        if result is not None and not result.ok:
            api.save(inv)
            api.emit("invoice.payment_failed", inv)
            raise KeepAndFail(card_error(result))
        if inv["status"] == "paid" and inv.get("_sandbox", {}).get("dunning_ends_at"):
            inv["_sandbox"]["dunning_ends_at"] = None
            api.save(inv)
        after_payment(api, sub, True)
        return inv

    def void(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        inv = self.api.load(id, "invoice")
        if inv["status"] not in ("open", "uncollectible"):
            raise invalid(f"You can only void an open or uncollectible invoice; this one is {inv['status']}.")
        now = self.api.now(inv["customer"])
        inv.update(status="void", next_payment_attempt=None, amount_remaining=0)
        inv["status_transitions"]["voided_at"] = now
        self.api.save(inv)
        self.api.emit("invoice.voided", inv)
        return inv

    def mark_uncollectible(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        inv = self.api.load(id, "invoice")
        if inv["status"] != "open":
            raise invalid(f"You can only mark an open invoice uncollectible; this one is {inv['status']}.")
        inv.update(status="uncollectible", next_payment_attempt=None)
        inv["status_transitions"]["marked_uncollectible_at"] = self.api.now(inv["customer"])
        self.api.save(inv)
        self.api.emit("invoice.marked_uncollectible", inv)
        return inv

    def list_payments(self, p: dict[str, Any]) -> dict[str, Any]:
        where = [("ref = ?", [p["invoice"]])] if p.get("invoice") else []
        return self.api.list("invoice_payment", p, "/v1/invoice_payments", where)

    def list_items(self, p: dict[str, Any]) -> dict[str, Any]:
        where: list[tuple[str, list[Any]]] = []
        if p.get("customer"):
            where.append(("customer = ?", [p["customer"]]))
        if "pending" in p:
            op = "IS NULL" if to_bool(p["pending"], "pending") else "IS NOT NULL"
            where.append((f"json_extract(data, '$.invoice') {op}", []))
        return self.api.list("invoiceitem", p, "/v1/invoiceitems", where)

    def create_item(self, p: dict[str, Any]) -> dict[str, Any]:
        """A one-off charge (or, negative, a credit) waiting for the customer's next invoice, as
        someone adds in Stripe's Dashboard: ``customer``, ``amount`` and ``currency``, optionally
        ``subscription`` (then only that subscription's invoice takes it)."""
        api = self.api
        if not p.get("customer"):
            raise missing_param("customer")
        cus = api.load(p["customer"], "customer", "customer")
        if p.get("amount") in (None, ""):
            raise missing_param("amount")
        if not p.get("currency"):
            raise missing_param("currency")
        amount, currency = to_int(p["amount"], "amount"), str(p["currency"]).lower()
        parent = None
        if p.get("subscription"):
            sub = api.load(p["subscription"], "subscription", "subscription")
            if sub["customer"] != cus["id"]:
                raise invalid("The subscription does not belong to this customer.", param="subscription")
            if sub["currency"] != currency:
                raise invalid(f"The currency {currency} does not match the subscription's {sub['currency']}.",
                              param="currency")
            parent = {"type": "subscription_details",
                      "subscription_details": {"subscription": sub["id"], "subscription_item": None}}
        now = api.now(cus)
        ii = {
            "id": new_id("ii"), "object": "invoiceitem", "amount": amount, "currency": currency,
            "customer": cus["id"], "customer_account": None, "date": now,
            "description": p.get("description") or None, "discountable": amount > 0, "discounts": [],
            "invoice": None, "livemode": False, "metadata": metadata_update({}, p.get("metadata") or {}),
            "net_amount": amount, "parent": parent, "period": {"start": now, "end": now},
            "pricing": {"type": "price_details", "price_details": None, "unit_amount_decimal": str(amount)},
            "proration": False, "proration_details": {"discount_amounts": []}, "quantity": 1,
            "quantity_decimal": "1", "tax_rates": [], "test_clock": cus.get("test_clock"),
            "_sandbox": {"created": now},
        }
        api.save(ii)
        api.emit("invoiceitem.created", ii)
        return ii

    # -- previews -----------------------------------------------------------------------------
    def preview(self, p: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        raw_details = p.get("subscription_details")
        details = raw_details if isinstance(raw_details, dict) else {}
        sub_id = p.get("subscription")
        if not sub_id and not p.get("customer"):
            raise missing_param("customer")
        from stripe_sandbox.resources.subscriptions import Subscriptions
        subs = Subscriptions(api)
        mark = len(api.pending_events)
        api.dry_run = True
        try:
            with api.store.scratch():
                if sub_id:
                    sub = api.load(sub_id, "subscription", "subscription")
                    if p.get("customer") and p["customer"] != sub["customer"]:
                        raise invalid("The subscription does not belong to this customer.", param="subscription")
                    upd = {k: v for k, v in details.items()
                           if k in ("items", "proration_behavior", "proration_date", "cancel_at_period_end",
                                    "trial_end", "billing_cycle_anchor", "cancel_at", "default_payment_method")}
                    latest = sub.get("latest_invoice")
                    if upd:
                        sub = subs.update(upd, sub_id)
                    if sub.get("latest_invoice") != latest:
                        inv = api.load(sub["latest_invoice"], "invoice")  # invoiced at once
                    else:
                        inv = self._next_renewal(sub)
                else:
                    items = details.get("items") or p.get("subscription_items")
                    body = {"customer": p["customer"], "items": items,
                            "payment_behavior": "default_incomplete"}
                    for k in ("trial_end", "trial_period_days"):
                        if k in details:
                            body[k] = details[k]
                    sub = subs.create(body)
                    inv = api.load(sub["latest_invoice"], "invoice")
                inv = public(api.render(inv, ("payments",)))
        finally:
            api.dry_run = False
            del api.pending_events[mark:]
        inv["id"] = "upcoming_" + inv["id"]
        inv.update(status="draft", number=None, hosted_invoice_url=None, attempt_count=0, attempted=False)
        inv["status_transitions"] = {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                                     "voided_at": None}
        inv["payments"] = {**inv["payments"], "data": []}
        return inv

    def _next_renewal(self, sub: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        if sub["status"] in ("canceled", "incomplete_expired") or sub.get("cancel_at_period_end"):
            raise invalid("No upcoming invoices for this subscription.", code="invoice_upcoming_none")
        start, end = billing.period_of(sub)
        nxt = billing.next_period_end(end, sub["items"]["data"][0]["price"]["recurring"], sub["billing_cycle_anchor"])
        inv = billing.new_invoice(api, sub, billing_reason="subscription_cycle", at=end, period=(start, end))
        billing.add_lines(api, inv, sub, billing.pending_items(api, sub), (end, nxt))
        billing.apply_balance(api, inv)  # inside the preview's rolled-back savepoint
        inv["next_payment_attempt"] = end
        return inv


