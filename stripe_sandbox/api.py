"""The sandbox's request core: routing, time, ids, events, lists and expansion.

``Api.handle(method, path, params)`` answers one Stripe request as ``(status, body)``; it knows
nothing about HTTP. Resource modules register their routes with ``Api.route``. Internal fields live
under the ``_sandbox`` key of a stored object and are stripped from every answer.

Time: objects of a customer on a test clock live at the clock's ``frozen_time`` (events included);
everything else at the real time.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import secrets
import string
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stripe_sandbox.complete import complete, plan_of
from stripe_sandbox.errors import StripeError, invalid, no_such
from stripe_sandbox.forms import as_list, to_int
from stripe_sandbox.store import SandboxStore

log = logging.getLogger("stripe_sandbox")
API_VERSION = "2026-10-28.endive"
# Top-level parameters each endpoint accepts (from Stripe's OpenAPI description): anything else is
# refused like Stripe refuses it, so a caller's typo fails here and not first in production.
ACCEPTED: dict[str, list[str] | None] = {
    k: v for k, v in json.loads((Path(__file__).parent / "params.json").read_text()).items() if not k.startswith("_")}
_ALPHABET = string.ascii_letters + string.digits

Handler = Callable[..., Any]

# Includable fields (Stripe: "not included by default; expand it to include it"): absent from an
# answer unless ``expand[]`` or ``include[]`` names them (``data.<field>`` on a list page).
INCLUDABLE: dict[str, tuple[str, ...]] = {"invoice": ("payments", "confirmation_secret")}
# Expandable fields some stored objects hold expanded (the demo world embeds the charge's balance
# transaction): always answered as the id unless the request expands them.
COLLAPSED: dict[str, tuple[str, ...]] = {"charge": ("balance_transaction",), "refund": ("balance_transaction",)}

# id prefix -> (object type, the noun Stripe uses in "No such ..." messages)
PREFIXES: dict[str, tuple[str, str]] = {
    "cus": ("customer", "customer"), "prod": ("product", "product"), "price": ("price", "price"),
    "pm": ("payment_method", "PaymentMethod"), "sub": ("subscription", "subscription"),
    "in": ("invoice", "invoice"), "pi": ("payment_intent", "payment_intent"), "ch": ("charge", "charge"),
    "re": ("refund", "refund"), "dp": ("dispute", "dispute"), "evt": ("event", "event"),
    "clock": ("test_helpers.test_clock", "test clock"), "we": ("webhook_endpoint", "webhook endpoint"),
    "ii": ("invoiceitem", "invoiceitem"), "inpay": ("invoice_payment", "invoice payment"),
    "txn": ("balance_transaction", "balance transaction"),
}


class KeepAndFail(Exception):
    """Raised by a handler whose writes must be kept although the answer is an error (a declined charge)."""

    def __init__(self, error: StripeError) -> None:
        super().__init__(str(error))
        self.error = error


def new_id(prefix: str) -> str:
    """``prefix_`` and 16 random letters and digits (one read of the OS's randomness, not 16)."""
    n = int.from_bytes(secrets.token_bytes(12), "big")  # 96 bits: 62**16 is just above 2**95
    chars = []
    for _ in range(16):
        n, r = divmod(n, 62)
        chars.append(_ALPHABET[r])
    return f"{prefix}_{''.join(chars)}"


def public(obj: Any) -> Any:
    """``obj`` without internal ``_sandbox`` fields (kept only at the top level of stored objects and
    of list items, so a shallow pass is enough)."""
    if isinstance(obj, dict):
        out = {k: v for k, v in obj.items() if k != "_sandbox"}
        if out.get("object") == "list" and isinstance(out.get("data"), list):
            out["data"] = [public(v) for v in out["data"]]
        return out
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return obj


def _with_plan(item: dict[str, Any]) -> dict[str, Any]:
    price = item.get("price")
    return {**item, "plan": plan_of(price)} if isinstance(price, dict) else item


def id_of(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


class Api:
    def __init__(self, store: SandboxStore) -> None:
        self.store = store
        self._routes: list[tuple[str, re.Pattern[str], Handler, str]] = []
        self.forced_now: int | None = None  # set while a test clock advances
        self.listeners: list[Callable[[dict[str, Any]], None]] = []  # webhook delivery
        self.request_ctx: dict[str, Any] = {}
        self.pending_events: list[dict[str, Any]] = []
        self.dry_run = False  # invoice previews: build invoices, never charge
        from stripe_sandbox.resources import register_all
        register_all(self)

    # -- routing ------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        rx = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self._routes.append((method, rx, handler, f"{method} {pattern}"))

    def handle(self, method: str, path: str, params: dict[str, Any],
               idempotency_key: str | None = None) -> tuple[int, Any]:
        self.request_ctx = {"id": new_id("req"), "idempotency_key": idempotency_key}
        path_known = False
        for m, rx, handler, key in self._routes:
            match = rx.match(path)
            if not match:
                continue
            path_known = True
            if m != method:
                continue
            allowed = ACCEPTED.get(key)
            # ``include[]`` asks for includable fields on any read, like ``expand[]``.
            unknown = sorted(set(params) - set(allowed) - {"include"}) if allowed is not None else []
            if unknown:
                return 400, StripeError(400, "invalid_request_error", f"Received unknown parameter: {unknown[0]}",
                                        code="parameter_unknown", param=unknown[0]).payload()
            self.pending_events = []
            asked = [str(x) for x in as_list(params.get("expand")) + as_list(params.get("include"))]
            # The includable fields asked for: "payments" (or a path through it) for one object,
            # "data.payments" on a list page.
            self.request_ctx["include"] = {a.split(".")[0] for a in asked}
            self.request_ctx["include_items"] = {a.split(".")[1] for a in asked if a.startswith("data.")}
            kept: StripeError | None = None
            try:
                with self.store.transaction():
                    try:
                        result = handler(params, **match.groupdict())
                    except KeepAndFail as exc:
                        kept = exc.error
            except StripeError as exc:
                self.pending_events = []
                return exc.status, exc.payload()
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                # A bug or an object the sandbox cannot handle: Stripe's 500, nothing written.
                self.pending_events = []
                self.dry_run = False
                log.exception("sandbox failed on %s %s", method, path)
                return 500, StripeError(500, "api_error", f"The sandbox could not handle this request ({exc!r})."
                                        ).payload()
            events, self.pending_events = self.pending_events, []
            for event in events:
                for listener in self.listeners:
                    listener(event)
            if kept is not None:
                return kept.status, kept.payload()
            expand = [str(p) for p in as_list(params.get("expand"))]
            if isinstance(result, dict) and result.get("object") != "list":
                result = self.render(result, self.request_ctx.get("include") or ())
            result = self.expand(public(result), expand) if expand else public(result)
            return 200, result
        if path_known:
            return 405, StripeError(405, "invalid_request_error",
                                    f"Unrecognized request URL ({method}: {path}).").payload()
        return 404, StripeError(404, "invalid_request_error",
                                f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                                "or we can help at https://support.stripe.com/.").payload()

    # -- time ---------------------------------------------------------------------------------
    def now(self, customer: Any = None) -> int:
        if self.forced_now is not None:
            return self.forced_now
        cus_id = id_of(customer)
        if cus_id:
            cus = self.store.get(cus_id)
            if cus and cus.get("test_clock"):
                clock = self.store.get(cus["test_clock"])
                if clock:
                    return int(clock["frozen_time"])
        return int(time.time())

    # -- objects ------------------------------------------------------------------------------
    def get(self, obj_id: str | None) -> dict[str, Any] | None:
        """A stored object with its missing standard fields filled in, or None."""
        return complete(self.store.get(obj_id)) if obj_id else None

    def select(self, kind: str, where: list[tuple[str, list[Any]]] | None = None) -> list[dict[str, Any]]:
        return [complete(o) or o for o in self.store.select(kind, where)]

    def load(self, obj_id: Any, kind: str, param: str = "id", *, allow_deleted: bool = False) -> dict[str, Any]:
        obj = self.get(obj_id) if isinstance(obj_id, str) and obj_id else None
        if obj is None or obj.get("object") != kind or (obj.get("deleted") and not allow_deleted):
            noun = next((n for t, n in PREFIXES.values() if t == kind), kind)
            raise no_such(noun, str(obj_id), param)
        return obj

    def save(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.store.put(obj)
        return obj

    # -- events -------------------------------------------------------------------------------
    def emit(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None,
             customer: Any = None) -> dict[str, Any]:
        if customer is not None:
            cus = customer
        elif obj.get("object") == "customer":
            cus = obj["id"]
        else:
            cus = obj.get("customer") or (obj.get("_sandbox") or {}).get("customer")
        event: dict[str, Any] = {
            "id": new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": self.now(cus), "livemode": False, "pending_webhooks": 0, "type": type_,
            "data": {"object": public(self.render(obj))},  # default shape: an event never expands
            "request": {"id": self.request_ctx.get("id") if self.forced_now is None else None,
                        "idempotency_key": self.request_ctx.get("idempotency_key") if self.forced_now is None else None},
        }
        if previous is not None:
            event["data"]["previous_attributes"] = public(previous)
        self.store.put(event)
        # delivered to webhooks after the request commits; a copy, since the object may change again
        self.pending_events.append(copy.deepcopy(event))
        return event

    def render(self, obj: dict[str, Any], include: Any = ()) -> dict[str, Any]:
        """The answer shape of a stored object, Stripe's default unless ``include`` names includable
        fields: invoices embed only their first 10 lines and no ``payments``; expandable fields
        stored expanded are answered as ids; an event's object is always in the default shape.
        Never changes ``obj`` itself (it may be saved again)."""
        complete(obj)
        kind = obj.get("object")
        if kind == "invoice":
            from stripe_sandbox.resources.invoices import render_invoice
            obj = render_invoice(obj)
        elif kind == "event":
            data = obj.get("data") or {}
            inner = data.get("object")
            if isinstance(inner, dict):
                return {**obj, "data": {**data, "object": public(self.render(inner))}}
            return obj
        elif kind == "subscription" and (obj.get("items") or {}).get("data"):
            # The legacy ``plan`` of each item, always the item's current price (never stored).
            items = obj["items"]
            obj = {**obj, "items": {**items, "data": [_with_plan(i) for i in items["data"]]}}
        elif kind == "subscription_item":
            obj = _with_plan(obj)
        drop = [k for k in INCLUDABLE.get(kind or "", ()) if k in obj and k not in include]
        collapse = [k for k in COLLAPSED.get(kind or "", ()) if isinstance(obj.get(k), dict)]
        if drop or collapse:
            obj = {k: v for k, v in obj.items() if k not in drop}
            for k in collapse:
                obj[k] = obj[k].get("id")
        return obj

    # -- lists --------------------------------------------------------------------------------
    def list(self, kind: str, params: dict[str, Any], url: str,
             where: list[tuple[str, list[Any]]] | None = None) -> dict[str, Any]:
        where = list(where or [])
        limit = to_int(params.get("limit", 10), "limit")
        if not 1 <= limit <= 100:
            raise invalid("Invalid limit: must be between 1 and 100", param="limit")
        created = params.get("created")
        if isinstance(created, dict):
            ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
            for op, value in created.items():
                if op not in ops:
                    raise invalid(f"Invalid created filter: {op}", param=f"created[{op}]")
                where.append((f"created {ops[op]} ?", [to_int(value, f"created[{op}]")]))
        elif created not in (None, ""):
            where.append(("created = ?", [to_int(created, "created")]))
        try:
            data, more = self.store.query(kind, where=where, limit=limit,
                                          starting_after=params.get("starting_after") or None,
                                          ending_before=params.get("ending_before") or None)
        except KeyError as exc:
            param = "starting_after" if params.get("starting_after") else "ending_before"
            raise no_such("object", str(exc.args[0]), param) from None
        include = self.request_ctx.get("include_items") or ()
        return {"object": "list", "data": [self.render(o, include) for o in data], "has_more": more, "url": url}

    # -- expansion ----------------------------------------------------------------------------
    def expand(self, obj: Any, paths: Sequence[str]) -> Any:
        for path in paths:
            obj = self._expand_one(obj, path.split("."))
        return obj

    def _expand_one(self, node: Any, parts: Sequence[str]) -> Any:
        if not parts or node is None:
            return node
        if isinstance(node, list):
            return [self._expand_one(n, parts) for n in node]
        if not isinstance(node, dict):
            return node
        head, rest = parts[0], parts[1:]
        if head not in node:
            if head in INCLUDABLE.get(node.get("object") or "", ()) and node.get("id"):
                # An includable field of an object already rendered without it (a nested expansion).
                stored = self.get(node["id"])
                if stored is not None and head in stored:
                    node = {**node, head: public(stored[head])}
            if head not in node:
                return node
        value = node[head]
        # An expanded object carries the includable field the rest of the path names.
        include = rest[:1]
        if isinstance(value, str):
            target = self.get(value)
            if target is not None:
                value = public(self.render(target, include))
        elif isinstance(value, list):
            value = [public(self.render(self.get(v) or {"id": v}, include)) if isinstance(v, str) else v
                     for v in value]
        node = dict(node)
        node[head] = self._expand_one(value, rest)
        return node

    def deep(self, obj: Any) -> Any:
        return copy.deepcopy(obj)
