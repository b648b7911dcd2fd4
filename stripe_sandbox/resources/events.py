"""Events: list (newest first, ``created`` filters, ``type`` with ``*`` wildcards, ``types[]``) and retrieve."""

from __future__ import annotations

import time
from typing import Any

from stripe_sandbox.api import Api
from stripe_sandbox.errors import invalid
from stripe_sandbox.forms import as_list


def register(api: Api) -> None:
    api.route("GET", "/v1/events", lambda p: list_events(api, p))
    api.route("GET", "/v1/events/{id}", lambda p, id: api.load(id, "event"))


def _type_clause(pattern: str) -> tuple[str, list[Any]]:
    if "*" in pattern:
        return "status LIKE ?", [pattern.replace("%", r"\%").replace("_", r"\_").replace("*", "%")]
    return "status = ?", [pattern]


def list_events(api: Api, p: dict[str, Any]) -> dict[str, Any]:
    where: list[tuple[str, list[Any]]] = []
    if p.get("type") and p.get("types"):
        raise invalid("You may only specify one of these parameters: type, types.", param="types")
    if p.get("type"):
        frag, args = _type_clause(str(p["type"]))
        where.append((frag.replace("LIKE ?", "LIKE ? ESCAPE '\\'"), args))
    types = [str(t) for t in as_list(p.get("types"))]
    if types:
        parts = [_type_clause(t) for t in types]
        where.append(("(" + " OR ".join(f.replace("LIKE ?", "LIKE ? ESCAPE '\\'") for f, _ in parts) + ")",
                      [a for _, args in parts for a in args]))
    days = int(api.store.meta_get("event_retention_days", "0") or 0)
    if days:
        # Stripe lists only the last 30 days of events; older ones are silently left out.
        where.append(("created >= ?", [int(time.time()) - days * 86400]))
    return api.list("event", p, "/v1/events", where)
