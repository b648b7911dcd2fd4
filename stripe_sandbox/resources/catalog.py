"""Customers, products, prices, payment methods and webhook endpoints."""

from __future__ import annotations

import secrets
from typing import Any

from stripe_sandbox import cards
from stripe_sandbox.api import Api, id_of, new_id
from stripe_sandbox.errors import StripeError, invalid, missing_param
from stripe_sandbox.forms import metadata_update, to_bool, to_int

_CUSTOMER_FIELDS = ("name", "email", "phone", "description")
# Stripe's published maximum lengths (OpenAPI spec, POST /v1/customers): a longer value is refused.
_CUSTOMER_MAX_LENGTH = {"name": 256, "email": 512, "phone": 20, "description": 5000}


def _check_lengths(p: dict[str, Any]) -> None:
    for field, most in _CUSTOMER_MAX_LENGTH.items():
        value = p.get(field)
        if isinstance(value, str) and len(value) > most:
            raise invalid(f"Invalid string: {value[:20]}...; must be at most {most} characters", param=field)


def register(api: Api) -> None:
    c = Catalog(api)
    api.route("POST", "/v1/customers", c.create_customer)
    api.route("GET", "/v1/customers", c.list_customers)
    api.route("GET", "/v1/customers/{id}", c.get_customer)
    api.route("POST", "/v1/customers/{id}", c.update_customer)
    api.route("DELETE", "/v1/customers/{id}", c.delete_customer)
    api.route("GET", "/v1/customers/{id}/payment_methods", c.customer_pms)
    api.route("POST", "/v1/products", c.create_product)
    api.route("GET", "/v1/products", c.list_products)
    api.route("GET", "/v1/products/{id}", lambda p, id: api.load(id, "product"))
    api.route("POST", "/v1/products/{id}", c.update_product)
    api.route("POST", "/v1/prices", c.create_price)
    api.route("GET", "/v1/prices", c.list_prices)
    api.route("GET", "/v1/prices/{id}", lambda p, id: api.load(id, "price"))
    api.route("POST", "/v1/prices/{id}", c.update_price)
    api.route("POST", "/v1/payment_methods", c.create_pm)
    api.route("GET", "/v1/payment_methods", c.list_pms)
    api.route("GET", "/v1/payment_methods/{id}", lambda p, id: c.resolve_pm(id, param="id"))
    api.route("POST", "/v1/payment_methods/{id}", c.update_pm)
    api.route("POST", "/v1/payment_methods/{id}/attach", c.attach_pm)
    api.route("POST", "/v1/payment_methods/{id}/detach", c.detach_pm)
    api.route("POST", "/v1/webhook_endpoints", c.create_we)
    api.route("GET", "/v1/webhook_endpoints", lambda p: _no_secret(api.list("webhook_endpoint", p,
                                                                           "/v1/webhook_endpoints")))
    api.route("GET", "/v1/webhook_endpoints/{id}", lambda p, id: _no_secret(api.load(id, "webhook_endpoint")))
    api.route("DELETE", "/v1/webhook_endpoints/{id}", c.delete_we)


def _no_secret(obj: dict[str, Any]) -> dict[str, Any]:
    """Stripe shows an endpoint's signing secret only in the answer that creates it."""
    if obj.get("object") == "list":
        return {**obj, "data": [_no_secret(o) for o in obj["data"]]}
    return {k: v for k, v in obj.items() if k != "secret"}


class Catalog:
    def __init__(self, api: Api) -> None:
        self.api = api

    # -- customers ----------------------------------------------------------------------------
    def create_customer(self, p: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        clock = p.get("test_clock") or None
        _check_lengths(p)
        created = api.now()
        if clock:
            created = int(api.load(clock, "test_helpers.test_clock", "test_clock")["frozen_time"])
        cus_id = p.get("id") or new_id("cus")
        cus: dict[str, Any] = {
            "id": cus_id, "object": "customer", "address": p.get("address") or None, "balance": 0,
            "created": created, "currency": None, "default_source": None, "delinquent": False,
            "description": None, "discount": None, "email": None, "invoice_prefix": cus_id[4:12].upper(),
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                 "rendering_options": None},
            "livemode": False, "metadata": metadata_update({}, p.get("metadata") or {}), "name": None,
            "next_invoice_sequence": 1, "phone": None, "preferred_locales": p.get("preferred_locales") or [],
            "shipping": None, "tax_exempt": "none", "test_clock": clock,
        }
        for f in _CUSTOMER_FIELDS:
            if p.get(f) not in (None, ""):
                cus[f] = p[f]
        api.save(cus)
        if p.get("payment_method"):
            pm = self.resolve_pm(p["payment_method"], param="payment_method")
            self._attach(pm, cus)
        default = (p.get("invoice_settings") or {}).get("default_payment_method")
        if default:
            pm = self.resolve_pm(default, param="invoice_settings[default_payment_method]")
            if pm.get("customer") != cus_id:
                self._attach(pm, cus)
            cus["invoice_settings"]["default_payment_method"] = pm["id"]
            api.save(cus)
        api.emit("customer.created", cus)
        return cus

    def get_customer(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        cus = self.api.load(id, "customer", allow_deleted=True)
        if cus.get("deleted"):
            return {"id": cus["id"], "object": "customer", "deleted": True}
        return cus

    def list_customers(self, p: dict[str, Any]) -> dict[str, Any]:
        where = []
        if p.get("email"):
            where.append(("json_extract(data, '$.email') = ?", [p["email"]]))
        if p.get("test_clock"):
            where.append(("json_extract(data, '$.test_clock') = ?", [p["test_clock"]]))
        return self.api.list("customer", p, "/v1/customers", where)

    def update_customer(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        api = self.api
        _check_lengths(p)
        cus = api.load(id, "customer")
        before = api.deep(cus)
        for f in (*_CUSTOMER_FIELDS, "address", "preferred_locales"):
            if f in p:
                cus[f] = p[f] or None
        if "metadata" in p:
            cus["metadata"] = metadata_update(cus.get("metadata"), p["metadata"])
        settings = p.get("invoice_settings")
        if isinstance(settings, dict) and "default_payment_method" in settings:
            ref = settings["default_payment_method"]
            if ref:
                pm = self.resolve_pm(ref, param="invoice_settings[default_payment_method]")
                if pm.get("customer") != cus["id"]:
                    if pm.get("customer"):
                        raise invalid(f"The payment method {pm['id']} belongs to another customer.",
                                      param="invoice_settings[default_payment_method]")
                    self._attach(pm, cus)
                ref = pm["id"]
            cus["invoice_settings"]["default_payment_method"] = ref or None
        api.save(cus)
        previous = {k: before.get(k) for k in cus if cus.get(k) != before.get(k)}
        if previous:
            api.emit("customer.updated", cus, previous)
        return cus

    def delete_customer(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        api = self.api
        cus = api.load(id, "customer")
        from stripe_sandbox.resources.subscriptions import end_subscription
        for sub in api.select("subscription", [("customer = ?", [id]),
                                                     ("status NOT IN ('canceled', 'incomplete_expired')", [])]):
            end_subscription(api, sub, reason="cancellation_requested")
        cus["deleted"] = True
        api.save(cus)
        api.emit("customer.deleted", cus)
        return {"id": id, "object": "customer", "deleted": True}

    # -- products and prices ------------------------------------------------------------------
    def create_product(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("name"):
            raise missing_param("name")
        now = self.api.now()
        prod = {
            "id": p.get("id") or new_id("prod"), "object": "product", "active": to_bool(p.get("active", True), "active"),
            "created": now, "default_price": None, "description": p.get("description") or None, "images": [],
            "livemode": False, "marketing_features": [], "metadata": metadata_update({}, p.get("metadata") or {}),
            "name": p["name"], "package_dimensions": None, "shippable": None, "statement_descriptor": None,
            "tax_code": None, "type": "service", "unit_label": None, "updated": now, "url": None,
        }
        if self.api.get(prod["id"]):
            raise invalid(f"Product already exists: {prod['id']}", param="id", code="resource_already_exists")
        self.api.save(prod)
        self.api.emit("product.created", prod)
        return prod

    def list_products(self, p: dict[str, Any]) -> dict[str, Any]:
        where = []
        if "active" in p:
            where.append(("json_extract(data, '$.active') = ?", [1 if to_bool(p["active"], "active") else 0]))
        return self.api.list("product", p, "/v1/products", where)

    def update_product(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        prod = self.api.load(id, "product")
        before = self.api.deep(prod)
        for f in ("name", "description", "default_price"):
            if f in p:
                prod[f] = p[f] or None
        if "active" in p:
            prod["active"] = to_bool(p["active"], "active")
        if "metadata" in p:
            prod["metadata"] = metadata_update(prod.get("metadata"), p["metadata"])
        prod["updated"] = self.api.now()
        self.api.save(prod)
        self.api.emit("product.updated", prod, {k: before[k] for k in before if before[k] != prod.get(k)})
        return prod

    def create_price(self, p: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        for req in ("currency", "product"):
            if not p.get(req):
                raise missing_param(req)
        api.load(p["product"], "product", "product")
        if "unit_amount" not in p:
            raise missing_param("unit_amount")
        amount = to_int(p["unit_amount"], "unit_amount")
        if amount < 0:
            raise invalid("Invalid unit_amount: must be at least 0", param="unit_amount")
        recurring = None
        if isinstance(p.get("recurring"), dict):
            r = p["recurring"]
            if r.get("interval") not in ("day", "week", "month", "year"):
                raise invalid("Invalid recurring[interval]: must be one of day, week, month, or year",
                              param="recurring[interval]")
            recurring = {"interval": r["interval"], "interval_count": to_int(r.get("interval_count", 1), "recurring[interval_count]"),
                         "meter": None, "trial_period_days": None, "usage_type": "licensed"}
        price = {
            "id": p.get("id") or new_id("price"), "object": "price", "active": to_bool(p.get("active", True), "active"),
            "billing_scheme": "per_unit", "created": api.now(), "currency": str(p["currency"]).lower(),
            "custom_unit_amount": None, "livemode": False, "lookup_key": p.get("lookup_key") or None,
            "metadata": metadata_update({}, p.get("metadata") or {}), "nickname": p.get("nickname") or None,
            "product": p["product"], "recurring": recurring, "tax_behavior": "unspecified", "tiers_mode": None,
            "transform_quantity": None, "type": "recurring" if recurring else "one_time",
            "unit_amount": amount, "unit_amount_decimal": str(amount),
        }
        api.save(price)
        api.emit("price.created", price)
        return price

    def list_prices(self, p: dict[str, Any]) -> dict[str, Any]:
        where = []
        if p.get("product"):
            where.append(("ref = ?", [p["product"]]))
        if "active" in p:
            where.append(("json_extract(data, '$.active') = ?", [1 if to_bool(p["active"], "active") else 0]))
        if p.get("currency"):
            where.append(("json_extract(data, '$.currency') = ?", [str(p["currency"]).lower()]))
        if p.get("type"):
            where.append(("json_extract(data, '$.type') = ?", [p["type"]]))
        keys = p.get("lookup_keys")
        if keys:
            keys = keys if isinstance(keys, list) else [keys]
            where.append((f"json_extract(data, '$.lookup_key') IN ({','.join('?' * len(keys))})", list(keys)))
        return self.api.list("price", p, "/v1/prices", where)

    def update_price(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        price = self.api.load(id, "price")
        before = self.api.deep(price)
        if "active" in p:
            price["active"] = to_bool(p["active"], "active")
        for f in ("nickname", "lookup_key"):
            if f in p:
                price[f] = p[f] or None
        if "metadata" in p:
            price["metadata"] = metadata_update(price.get("metadata"), p["metadata"])
        self.api.save(price)
        self.api.emit("price.updated", price, {k: before[k] for k in before if before[k] != price.get(k)})
        return price

    # -- payment methods ----------------------------------------------------------------------
    def _new_pm(self, number: str, exp_month: int, exp_year: int, param: str, customer: Any = None) -> dict[str, Any]:
        f = cards.facts(number)
        if f is None:
            raise StripeError(402, "card_error", "Your card number is incorrect.", code="incorrect_number",
                              param=param)
        pm = {
            "id": new_id("pm"), "object": "payment_method", "allow_redisplay": "unspecified",
            "billing_details": {"address": {"city": None, "country": None, "line1": None, "line2": None,
                                            "postal_code": None, "state": None},
                                "email": None, "name": None, "phone": None},
            "card": {"brand": f.brand, "checks": {"address_line1_check": None, "address_postal_code_check": None,
                                                  "cvc_check": "pass"},
                     "country": f.country, "display_brand": f.brand, "exp_month": exp_month, "exp_year": exp_year,
                     "fingerprint": secrets.token_hex(8), "funding": f.funding, "generated_from": None,
                     "last4": f.last4, "networks": {"available": [f.brand], "preferred": None},
                     "regulated_status": "unregulated", "three_d_secure_usage": {"supported": True}, "wallet": None},
            "created": self.api.now(customer), "customer": None, "livemode": False, "metadata": {}, "type": "card",
            "_sandbox": {"outcome": f.outcome},
        }
        return pm

    def resolve_pm(self, ref: Any, param: str) -> dict[str, Any]:
        """A stored payment method, or a new one for a ``pm_card_*`` / ``tok_*`` shortcut."""
        ref = id_of(ref)
        number = cards.shortcut_number(str(ref)) if ref else None
        if number:
            pm = self._new_pm(number, 12, 2034, param)
            self.api.save(pm)
            return pm
        return self.api.load(ref, "payment_method", param)

    def create_pm(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("type", "card") != "card":
            raise invalid("The sandbox only supports payment methods of type card.", param="type")
        card = p.get("card")
        if not isinstance(card, dict):
            raise missing_param("card")
        if card.get("token"):
            number = cards.shortcut_number(card["token"])
            if not number:
                raise invalid(f"No such token: '{card['token']}'", param="card[token]", code="resource_missing")
            pm = self._new_pm(number, 12, 2034, "card[token]")
        else:
            for req in ("number", "exp_month", "exp_year"):
                if not card.get(req):
                    raise missing_param(f"card[{req}]")
            month, year = to_int(card["exp_month"], "card[exp_month]"), to_int(card["exp_year"], "card[exp_year]")
            if year < 100:
                year += 2000
            if not 1 <= month <= 12:
                raise StripeError(402, "card_error", "Your card's expiration month is invalid.",
                                  code="invalid_expiry_month", param="card[exp_month]")
            if year < 2000 or year > 2100:
                raise StripeError(402, "card_error", "Your card's expiration year is invalid.",
                                  code="invalid_expiry_year", param="card[exp_year]")
            pm = self._new_pm(str(card["number"]), month, year, "card[number]")
        bd = p.get("billing_details")
        if isinstance(bd, dict):
            for k in ("email", "name", "phone"):
                if k in bd:
                    pm["billing_details"][k] = bd[k] or None
        if "metadata" in p:
            pm["metadata"] = metadata_update({}, p["metadata"])
        self.api.save(pm)
        return pm

    def list_pms(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("customer"):
            raise missing_param("customer")
        return self.customer_pms(p, p["customer"])

    def customer_pms(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        self.api.load(id, "customer", "customer")
        return self.api.list("payment_method", p, f"/v1/customers/{id}/payment_methods", [("customer = ?", [id])])

    def update_pm(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        pm = self.api.load(id, "payment_method")
        before = self.api.deep(pm)
        if "metadata" in p:
            pm["metadata"] = metadata_update(pm.get("metadata"), p["metadata"])
        card = p.get("card")
        if isinstance(card, dict):
            for k in ("exp_month", "exp_year"):
                if k in card:
                    pm["card"][k] = to_int(card[k], f"card[{k}]")
        self.api.save(pm)
        if pm.get("customer"):
            self.api.emit("payment_method.updated", pm, {k: before[k] for k in ("card", "metadata") if before[k] != pm[k]})
        return pm

    def _attach(self, pm: dict[str, Any], cus: dict[str, Any]) -> None:
        pm["customer"] = cus["id"]
        pm["created"] = pm.get("created") or self.api.now(cus["id"])
        self.api.save(pm)
        self.api.emit("payment_method.attached", pm)

    def attach_pm(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        if not p.get("customer"):
            raise missing_param("customer")
        cus = self.api.load(p["customer"], "customer", "customer")
        pm = self.resolve_pm(id, param="payment_method")
        if pm.get("customer") and pm["customer"] != cus["id"]:
            raise invalid("The payment method you provided has already been attached to a customer.",
                          param="payment_method")
        if pm.get("customer") != cus["id"]:
            self._attach(pm, cus)
        return pm

    def detach_pm(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        pm = self.api.load(id, "payment_method")
        if not pm.get("customer"):
            raise invalid(f"The payment method {id} is not attached to a customer.", param="payment_method")
        cus = self.api.get(pm["customer"])
        if cus and cus["invoice_settings"].get("default_payment_method") == id:
            cus["invoice_settings"]["default_payment_method"] = None
            self.api.save(cus)
        previous = {"customer": pm["customer"]}
        pm["customer"] = None
        self.api.save(pm)
        self.api.emit("payment_method.detached", pm, previous, customer=previous["customer"])
        return pm

    # -- webhook endpoints --------------------------------------------------------------------
    def create_we(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("url"):
            raise missing_param("url")
        events = p.get("enabled_events") or ["*"]
        we = {"id": new_id("we"), "object": "webhook_endpoint", "api_version": p.get("api_version") or None,
              "application": None, "created": self.api.now(), "description": p.get("description") or None,
              "enabled_events": events if isinstance(events, list) else [events], "livemode": False,
              "metadata": metadata_update({}, p.get("metadata") or {}), "secret": "whsec_" + secrets.token_hex(24),
              "status": "enabled", "url": p["url"]}
        self.api.save(we)
        return we

    def delete_we(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        we = self.api.load(id, "webhook_endpoint")
        we["deleted"] = True
        self.api.save(we)
        return {"id": id, "object": "webhook_endpoint", "deleted": True}
