"""Subscriptions: create (trials, first invoice), list, cancel, subscription items, and the status
changes a payment causes. Updates live in ``sub_update``."""

from __future__ import annotations

from typing import Any

from stripe_sandbox import billing
from stripe_sandbox.api import Api, id_of, new_id
from stripe_sandbox.errors import StripeError, invalid, missing_param, no_such
from stripe_sandbox.forms import as_list, metadata_update, to_bool, to_int
from stripe_sandbox.resources.payments import card_error
from stripe_sandbox.resources.sub_update import ENDED, SubscriptionUpdates


def register(api: Api) -> None:
    s = Subscriptions(api)
    api.route("POST", "/v1/subscriptions", s.create)
    api.route("GET", "/v1/subscriptions", s.list)
    api.route("GET", "/v1/subscriptions/{id}", lambda p, id: api.load(id, "subscription"))
    api.route("POST", "/v1/subscriptions/{id}", s.update)
    api.route("DELETE", "/v1/subscriptions/{id}", s.cancel)
    api.route("GET", "/v1/subscription_items", s.list_items)
    api.route("GET", "/v1/subscription_items/{id}", s.get_item)


def end_subscription(api: Api, sub: dict[str, Any], *, reason: str, comment: str | None = None,
                     feedback: str | None = None) -> dict[str, Any]:
    """Cancel now: status canceled, open invoices stop collecting, customer.subscription.deleted."""
    now = api.now(sub["customer"])
    sub.update(status="canceled", ended_at=now, canceled_at=sub.get("canceled_at") or now)
    details = sub["cancellation_details"]
    details["reason"] = reason
    if comment is not None:
        details["comment"] = comment or None
    if feedback is not None:
        details["feedback"] = feedback or None
    api.save(sub)
    for inv in api.select("invoice", [("ref = ?", [sub["id"]]), ("status = 'open'", [])]):
        inv.update(auto_advance=False, next_payment_attempt=None)
        inv["_sandbox"]["dunning_ends_at"] = None
        api.save(inv)
    api.emit("customer.subscription.deleted", sub)
    return sub


def after_payment(api: Api, sub: dict[str, Any] | None, ok: bool) -> None:
    """The subscription status a paid (or failed) invoice leads to."""
    if sub is None or sub["status"] in ENDED:
        return
    if ok and sub["status"] in ("past_due", "unpaid", "incomplete"):
        billing.set_status(api, sub, "active")
    elif not ok and sub["status"] in ("active", "trialing"):
        billing.set_status(api, sub, "past_due")


class Subscriptions(SubscriptionUpdates):
    def __init__(self, api: Api) -> None:
        self.api = api

    # -- helpers ------------------------------------------------------------------------------
    def _price(self, ref: Any, param: str) -> dict[str, Any]:
        price = self.api.load(id_of(ref), "price", param)
        if not price.get("recurring"):
            raise invalid(f"The price specified ({price['id']}) is not recurring; subscriptions need a recurring price.",
                          param=param)
        if not price.get("active", True):
            raise invalid(f"The price specified ({price['id']}) is inactive. This field only accepts active prices.",
                          param=param)
        return price

    def _item(self, sub_id: str, price: dict[str, Any], qty: int, at: int, meta: Any = None) -> dict[str, Any]:
        if qty < 0:
            raise invalid("Invalid quantity: must be at least 0", param="quantity")
        return {"id": new_id("si"), "object": "subscription_item", "billing_thresholds": None, "created": at,
                "current_period_end": 0, "current_period_start": 0, "discounts": [],
                "metadata": metadata_update({}, meta or {}), "price": price, "quantity": qty,
                "subscription": sub_id, "tax_rates": []}

    def _pm(self, ref: Any, cus: dict[str, Any], param: str) -> str:
        from stripe_sandbox.resources.catalog import Catalog
        pm = Catalog(self.api).resolve_pm(ref, param=param)
        if pm.get("customer") and pm["customer"] != cus["id"]:
            raise invalid(f"The payment method {pm['id']} does not belong to this customer.", param=param)
        if not pm.get("customer"):
            pm["customer"] = cus["id"]
            self.api.save(pm)
            self.api.emit("payment_method.attached", pm)
        return pm["id"]

    @staticmethod
    def _check_items(items: list[dict[str, Any]]) -> None:
        currencies = {i["price"]["currency"] for i in items}
        intervals = {(i["price"]["recurring"]["interval"], i["price"]["recurring"].get("interval_count", 1))
                     for i in items}
        if len(currencies) > 1:
            raise invalid("All prices on a subscription must have the same currency.", param="items")
        if len(intervals) > 1:
            raise invalid("All prices on a subscription must have the same recurring interval.", param="items")
        prices = [i["price"]["id"] for i in items]
        if len(prices) != len(set(prices)):
            raise invalid("Cannot add multiple subscription items with the same price.", param="items")

    # -- create -------------------------------------------------------------------------------
    def create(self, p: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        if not p.get("customer"):
            raise missing_param("customer")
        cus = api.load(p["customer"], "customer", "customer")
        raw_items = as_list(p.get("items"))
        if not raw_items:
            raise missing_param("items")
        now = api.now(cus["id"])
        sub_id = new_id("sub")
        items = []
        for n, it in enumerate(raw_items):
            if not isinstance(it, dict) or not it.get("price"):
                raise missing_param(f"items[{n}][price]")
            items.append(self._item(sub_id, self._price(it["price"], f"items[{n}][price]"),
                                    to_int(it.get("quantity", 1), f"items[{n}][quantity]"), now, it.get("metadata")))
        self._check_items(items)
        if p.get("collection_method", "charge_automatically") != "charge_automatically":
            raise invalid("The sandbox only supports collection_method=charge_automatically.",
                          param="collection_method")
        behavior = p.get("payment_behavior") or "allow_incomplete"
        if behavior not in ("allow_incomplete", "error_if_incomplete", "default_incomplete", "pending_if_incomplete"):
            raise invalid(f"Invalid payment_behavior: {behavior}", param="payment_behavior")
        trial_end = None
        if p.get("trial_end") not in (None, "", "now"):
            trial_end = to_int(p["trial_end"], "trial_end")
            if trial_end <= now:
                raise invalid("Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end")
        elif p.get("trial_period_days") not in (None, ""):
            days = to_int(p["trial_period_days"], "trial_period_days")
            if days < 0 or days > 730:
                raise invalid("trial_period_days must be between 0 and 730.", param="trial_period_days")
            trial_end = now + days * billing.DAY if days else None
        default_pm = self._pm(p["default_payment_method"], cus, "default_payment_method") \
            if p.get("default_payment_method") else None
        price0 = items[0]["price"]
        sub = {
            "id": sub_id, "object": "subscription", "application": None, "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": trial_end or now, "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
            "billing_thresholds": None, "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically", "created": now, "currency": price0["currency"],
            "customer": cus["id"], "days_until_due": None, "default_payment_method": default_pm,
            "default_source": None, "default_tax_rates": [], "description": p.get("description") or None,
            "discounts": [], "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {"object": "list", "data": items, "has_more": False, "total_count": len(items),
                      "url": f"/v1/subscription_items?subscription={sub_id}"},
            "latest_invoice": None, "livemode": False, "metadata": metadata_update({}, p.get("metadata") or {}),
            "next_pending_invoice_item_invoice": None, "on_behalf_of": None, "pause_collection": None,
            "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                                 "save_default_payment_method": "off"},
            "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
            "schedule": None, "start_date": now, "status": "incomplete", "test_clock": cus.get("test_clock"),
            "transfer_data": None, "trial_end": trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": now if trial_end else None,
        }
        period_end = trial_end or billing.next_period_end(now, price0["recurring"], now)
        billing.set_period(sub, now, period_end)
        if p.get("metadata") is not None:
            sub["metadata"] = metadata_update({}, p["metadata"])
        if to_bool(p.get("cancel_at_period_end", False), "cancel_at_period_end"):
            sub.update(cancel_at_period_end=True, cancel_at=period_end)
        api.save(sub)
        inv = billing.new_invoice(api, sub, billing_reason="subscription_create", at=now, period=(now, now))
        billing.add_lines(api, inv, sub, [], (now, period_end), trial=bool(trial_end))
        inv["_sandbox"]["subscription"] = sub["id"]
        api.save(inv)
        api.emit("invoice.created", inv)
        billing.finalize(api, inv, now)
        sub["latest_invoice"] = inv["id"]
        status = "trialing" if trial_end else "active"
        if inv["amount_due"] > 0 and behavior == "default_incomplete":
            status = "incomplete"
        elif inv["amount_due"] > 0:
            pm = default_pm or (cus.get("invoice_settings") or {}).get("default_payment_method")
            if not pm:
                raise invalid("This customer has no attached payment source or default payment method. Please "
                              "consider adding a default payment method.", code="resource_missing")
            if not api.dry_run:
                result = billing.attempt(api, inv, sub, at=now)
                if result is not None and not result.ok:
                    if behavior == "error_if_incomplete":
                        raise card_error(result)
                    status = "incomplete"
        else:
            billing.attempt(api, inv, sub, at=now)
        sub["status"] = status
        api.save(sub)
        api.emit("customer.subscription.created", sub)
        return sub

    # -- list ---------------------------------------------------------------------------------
    def list(self, p: dict[str, Any]) -> dict[str, Any]:
        where: list[tuple[str, list[Any]]] = []
        if p.get("customer"):
            where.append(("customer = ?", [p["customer"]]))
        status = p.get("status")
        if status == "all":
            pass
        elif status:
            where.append(("status = ?", [status]))
        else:
            where.append(("status NOT IN ('canceled', 'incomplete_expired')", []))
        if p.get("price"):
            where.append(("EXISTS (SELECT 1 FROM json_each(data, '$.items.data') "
                          "WHERE json_extract(value, '$.price.id') = ?)", [p["price"]]))
        if p.get("test_clock"):
            where.append(("json_extract(data, '$.test_clock') = ?", [p["test_clock"]]))
        return self.api.list("subscription", p, "/v1/subscriptions", where)

    def list_items(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("subscription"):
            raise missing_param("subscription")
        sub = self.api.load(p["subscription"], "subscription", "subscription")
        items = sub["items"]["data"]
        limit = to_int(p.get("limit", 10), "limit")
        ids = [i["id"] for i in items]
        start = ids.index(p["starting_after"]) + 1 if p.get("starting_after") in ids else 0
        page = items[start:start + limit]
        return {"object": "list", "data": [self.api.render(i) for i in page], "has_more": start + limit < len(items),
                "url": "/v1/subscription_items"}

    def get_item(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        rows = self.api.select("subscription", [
            ("EXISTS (SELECT 1 FROM json_each(data, '$.items.data') WHERE json_extract(value, '$.id') = ?)", [id])])
        for sub in rows:
            for item in sub["items"]["data"]:
                if item["id"] == id:
                    return item
        raise no_such("subscription item", id)

    # -- cancel -------------------------------------------------------------------------------
    def cancel(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        api = self.api
        sub = api.load(id, "subscription")
        if sub["status"] in ENDED:
            raise StripeError(400, "invalid_request_error", f"The subscription {id} is already canceled.")
        raw_details = p.get("cancellation_details")
        details = raw_details if isinstance(raw_details, dict) else {}
        if details.get("feedback") not in (None, "", "customer_service", "low_quality", "missing_features", "other",
                                           "switched_service", "too_complex", "too_expensive", "unused"):
            raise invalid("Invalid cancellation_details[feedback]", param="cancellation_details[feedback]")
        sub["canceled_at"] = None
        end_subscription(api, sub, reason="cancellation_requested", comment=details.get("comment"),
                         feedback=details.get("feedback"))
        return sub

