"""Read calls the sync and reconciliation make, as plain dicts in today's API shapes.

Guarantees:
- every call goes through ``translate_errors()``: callers see ``GatewayError`` only;
- lists are paged by ``starting_after`` one page at a time (``list_page``), so a caller can
  commit after each page and resume from the last id after a crash;
- subscriptions are listed with ``status="all"`` (Stripe's default silently omits canceled ones);
- invoices come back with *all* their lines: Stripe embeds only the first 10, the rest are paged
  from ``/v1/invoices/{id}/lines`` and merged in (``lines.has_more`` is then false);
- Stripe answers its default shape unless asked, so every read asks for what the mapping needs:
  invoices with ``payments`` (an includable field, expanded, all pages), charges with their
  ``balance_transaction`` expanded (the fee);
- objects are returned as ``dict``s, the shape the mapping layer reads and the shape stored in the
  event ledger. Every read (list pages, the bulk of a backfill and of an event sync; a customer's
  cards; an invoice's extra lines; one object) goes through the client's ``raw_request``: the same
  request (API version, retries, timeouts, errors) without building a ``StripeObject`` per object,
  the body parsed once by the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import stripe

from core.stripe_gateway.errors import translate_errors

PAGE_SIZE = 100

# Object types we mirror, parents first: a row can only point at a parent already stored.
# Charges before invoices: today's charge names no invoice, the invoice names its payments
# (``invoice.payments``), so the store links them when the invoice arrives after its charges.
# (An older-shape charge naming its invoice makes the sync fetch that invoice first.)
BACKFILL_ORDER: tuple[str, ...] = (
    "product",
    "price",
    "customer",
    "payment_method",
    "subscription",
    "charge",
    "invoice",
    "refund",
    "dispute",
)

# Extra list parameters per type. Stripe answers the default shape unless asked: an invoice's
# payments are includable (absent unless expanded) and a charge's balance transaction, which holds
# Stripe's fee, is an id unless expanded. Without these a real account gives payments without
# their invoice (so no renewal flags, no attempt numbers per invoice) and no fees.
_LIST_PARAMS: dict[str, dict[str, Any]] = {
    "subscription": {"status": "all"},
    "invoice": {"expand": ["data.payments"]},
    "charge": {"expand": ["data.balance_transaction"]},
}


@dataclass(frozen=True)
class Page:
    """One page of a list: the objects (dicts), and whether more follow after ``last_id``."""

    objects: list[dict[str, Any]]
    has_more: bool
    body: str | None = None  # the response text the objects were parsed from, when read in one piece

    @property
    def last_id(self) -> str | None:
        return self.objects[-1]["id"] if self.objects else None


# Object type -> the path its list is read from (an object is read at the path + /id).
_LIST_PATHS: dict[str, str] = {
    "product": "/v1/products",
    "price": "/v1/prices",
    "customer": "/v1/customers",
    "subscription": "/v1/subscriptions",
    "invoice": "/v1/invoices",
    "charge": "/v1/charges",
    "refund": "/v1/refunds",
    "dispute": "/v1/disputes",
    "payment_method": "/v1/payment_methods",
    "payment_intent": "/v1/payment_intents",
    "event": "/v1/events",
    "test_helpers.test_clock": "/v1/test_helpers/test_clocks",
}


def _raw_get(client: stripe.StripeClient, path: str, query: dict[str, Any]) -> Page:
    """One list page as dicts, through the client's own request path (errors raise the same
    ``stripe`` exceptions, so ``translate_errors`` still applies). The response is parsed once, by
    the client (``response.data``: dicts, in the wire's key order)."""
    response = client.raw_request("get", path, **query)
    data = response.data
    return Page(objects=list(data.get("data") or []), has_more=bool(data.get("has_more")), body=response.body)


def _raw_list(client: stripe.StripeClient, object_type: str, query: dict[str, Any]) -> Page:
    return _raw_get(client, _path(object_type), query)


def _path(object_type: str) -> str:
    try:
        return _LIST_PATHS[object_type]
    except KeyError:
        raise ValueError(f"Unknown Stripe object type {object_type!r}.") from None


def list_page(
    client: stripe.StripeClient,
    object_type: str,
    *,
    starting_after: str | None = None,
    limit: int = PAGE_SIZE,
    params: dict[str, Any] | None = None,
) -> Page:
    """One page of ``object_type`` after ``starting_after`` (Stripe's order: newest first)."""
    query: dict[str, Any] = {"limit": limit, **_LIST_PARAMS.get(object_type, {}), **(params or {})}
    if starting_after:
        query["starting_after"] = starting_after
    with translate_errors():
        page = _raw_list(client, object_type, query)
        if object_type == "invoice":
            page = Page(objects=[_complete_payments(client, _complete_lines(client, inv)) for inv in page.objects],
                        has_more=page.has_more, body=page.body)  # extra lines/payments are not in the text
    return page


def iter_all(
    client: stripe.StripeClient, object_type: str, *, params: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Every object of a type, page after page (reconciliation walks whole lists this way)."""
    after: str | None = None
    while True:
        page = list_page(client, object_type, starting_after=after, params=params)
        yield from page.objects
        if not page.has_more or not page.objects:
            return
        after = page.last_id


def customer_payment_methods(client: stripe.StripeClient, customer_id: str) -> list[dict[str, Any]]:
    """All payment methods attached to one customer (Stripe lists them per customer)."""
    return _all_pages(client, f"/v1/customers/{quote(customer_id, safe='')}/payment_methods")


def _all_pages(client: stripe.StripeClient, path: str, after: str | None = None,
               query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    base = dict(query or {})
    with translate_errors():
        while True:
            query = {"limit": PAGE_SIZE, **base}
            if after:
                query["starting_after"] = after
            page = _raw_get(client, path, query)
            out.extend(page.objects)
            if not page.has_more or not page.objects:
                return out
            after = page.last_id


def _complete_lines(client: stripe.StripeClient, invoice: dict[str, Any]) -> dict[str, Any]:
    """Page an invoice's lines beyond the embedded first 10 and merge them in."""
    lines = invoice.get("lines") or {}
    data = list(lines.get("data") or [])
    if not lines.get("has_more") or not invoice.get("id"):
        return invoice
    data.extend(_all_pages(client, f"/v1/invoices/{quote(invoice['id'], safe='')}/lines",
                           after=data[-1]["id"] if data else None))
    invoice = dict(invoice)
    invoice["lines"] = {**lines, "data": data, "has_more": False, "total_count": len(data)}
    return invoice


def _complete_payments(client: stripe.StripeClient, invoice: dict[str, Any]) -> dict[str, Any]:
    """An invoice with every one of its payments: the expanded ``payments`` embeds the first 10 (like
    ``lines``), the rest are paged from the invoice payments API and merged in."""
    payments = invoice.get("payments")
    if not isinstance(payments, dict) or not payments.get("has_more") or not invoice.get("id"):
        return invoice
    data = list(payments.get("data") or [])
    data.extend(_all_pages(client, "/v1/invoice_payments", after=data[-1]["id"] if data else None,
                           query={"invoice": invoice["id"]}))
    return {**invoice, "payments": {**payments, "data": data, "has_more": False}}


def invoice_payments(client: stripe.StripeClient, invoice_id: str) -> dict[str, Any]:
    """Every payment of one invoice, as the ``payments`` list an expanded invoice would carry (an
    event's invoice never has it: Stripe does not expand anything in an event payload)."""
    with translate_errors():
        data = _all_pages(client, "/v1/invoice_payments", query={"invoice": invoice_id})
    return {"object": "list", "data": data, "has_more": False,
            "url": f"/v1/invoice_payments?invoice={invoice_id}"}


def balance_transaction(client: stripe.StripeClient, txn_id: str) -> dict[str, Any]:
    """One balance transaction (a charge's fee); immutable once created."""
    with translate_errors():
        txn: dict[str, Any] = client.raw_request("get", f"/v1/balance_transactions/{quote(txn_id, safe='')}").data
        return txn


# Which expands make a retrieved object self-contained enough for the mapping layer.
_RETRIEVE_EXPAND: dict[str, list[str]] = {
    "charge": ["balance_transaction"],
    "invoice": ["payments"],
}


def retrieve(
    client: stripe.StripeClient, object_type: str, object_id: str, *, expand: list[str] | None = None
) -> dict[str, Any]:
    """One object by id (with its invoice lines complete); ``GatewayError(kind="not_found")`` if gone."""
    params: dict[str, Any] = {}
    wanted = expand if expand is not None else _RETRIEVE_EXPAND.get(object_type, [])
    if wanted:
        params["expand"] = wanted
    if not object_id:
        raise ValueError(f"No {object_type} id to retrieve.")
    path = f"{_path(object_type)}/{quote(object_id, safe='')}"
    with translate_errors():
        obj: dict[str, Any] = client.raw_request("get", path, **params).data
        if object_type == "invoice":
            obj = _complete_payments(client, _complete_lines(client, obj))
    return obj


def dispute_close_times(client: stripe.StripeClient) -> dict[str, int]:
    """Dispute id -> the time of its earliest ``charge.dispute.closed`` event, for every such event
    Stripe still keeps (30 days): a backfill's only close time for a lost dispute."""
    out: dict[str, int] = {}
    for event in _all_pages(client, "/v1/events", query={"type": "charge.dispute.closed"}):
        dispute_id = ((event.get("data") or {}).get("object") or {}).get("id")
        if dispute_id and event.get("created") is not None:
            out[dispute_id] = min(int(event["created"]), out.get(dispute_id, int(event["created"])))
    return out


def events_page(
    client: stripe.StripeClient,
    *,
    created_gte: int | None,
    starting_after: str | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of events created at or after ``created_gte`` (epoch seconds), newest first.

    ``gte`` rather than ``gt``: events created in the same second as the cursor are fetched again
    and the ledger drops the duplicates, so none created later in that second is missed.
    """
    query: dict[str, Any] = {"limit": limit}
    if created_gte is not None:
        query["created"] = {"gte": int(created_gte)}
    if starting_after:
        query["starting_after"] = starting_after
    with translate_errors():
        return _raw_list(client, "event", query)


# The object type a Stripe id belongs to, by its prefix: used to fetch a missing parent.
ID_PREFIXES: dict[str, str] = {
    "prod_": "product",
    "price_": "price",
    "cus_": "customer",
    "pm_": "payment_method",
    "card_": "payment_method",
    "sub_": "subscription",
    "in_": "invoice",
    "ch_": "charge",
    "py_": "charge",
    "re_": "refund",
    "pyr_": "refund",
    "dp_": "dispute",
    "du_": "dispute",
    "pi_": "payment_intent",
}


def type_of_id(stripe_id: str) -> str | None:
    """``"cus_123"`` -> ``"customer"``; None for an unknown prefix."""
    for prefix, object_type in ID_PREFIXES.items():
        if stripe_id.startswith(prefix):
            return object_type
    return None
