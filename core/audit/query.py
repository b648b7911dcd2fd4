"""Reading the audit log for people: filter by staff, member, action and dates.

Guarantees: read-only (the log is append-only; ``core.audit`` is the only writer); dates are local
calendar days in the given time zone, half-open ``[start, end + 1 day)``; results are plain
DataFrames with timestamps in that zone, newest first, at most ``limit`` rows (the caller is told
when the limit cut the list); ``before``/``after`` come back decrypted as compact JSON text, and
``what_changed`` says in one line which fields differ between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.models import AuditEntry
from core.money import format_money
from core.timeutil import local_midnight, zone

DEFAULT_LIMIT = 2000
COLUMNS = ["at", "actor", "action", "member_id", "target_type", "target_id", "what_changed", "reason", "comment",
           "outcome", "approved_by", "request_id", "before", "after"]
# A one-line difference stops here: the whole record is in the before and after columns.
CHANGED_FIELDS = 12
# Fields the records keep as whole minor units beside a ``currency`` of their own object (a
# refund's detail, a subscription): "What changed" writes them as money ("€2.00", "¥600"), where
# the record's 200 read as two hundred euros.
MONEY_FIELDS = frozenset({"amount", "amount_minor", "amount_refunded", "amount_paid", "amount_due",
                          "payment_amount_refunded", "price_amount", "mrr_minor", "total"})


class AuditQueryError(ValueError):
    """A filter we cannot apply; str(error) is the sentence to show."""


@dataclass(frozen=True)
class AuditPage:
    rows: pd.DataFrame
    truncated: bool  # True when more entries matched than ``limit``


def as_json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def what_changed(before: Any, after: Any) -> str:
    """The fields that differ between ``before`` and ``after``, one line: ``subscription.tier:
    premium → platinum; subscription.status: active → canceled``. Nested objects by their dotted
    path, a field only on one side shown against "—", an entry with no before (a creation) as its
    fields' values. A reader saw two blobs of JSON of thirty fields each and had to find the two
    that moved."""
    old, new = _flat(before), _flat(after)
    parts = []
    for path in [*new, *(p for p in old if p not in new)]:
        if path in old and path in new and old[path] == new[path]:
            continue
        was, now = _shown(old.get(path), path, old), _shown(new.get(path), path, new)
        if before is None:
            parts.append(f"{path}: {now}" if path else now)
        else:
            parts.append(f"{path}: {was} → {now}" if path else f"{was} → {now}")
    if len(parts) > CHANGED_FIELDS:
        parts = [*parts[:CHANGED_FIELDS], f"and {len(parts) - CHANGED_FIELDS} more"]
    return "; ".join(parts)


def _changed_or_refused(entry: AuditEntry) -> str:
    """What changed; for an attempt that was refused, "Nothing: refused" first: a refused extend
    read "Member change: extend" with an empty What changed, like the change made a minute later,
    its Outcome column off the screen's edge."""
    changed = what_changed(entry.before, entry.after)
    if entry.outcome in ("refused", "failed"):
        return f"Nothing: {entry.outcome}" + (f" ({changed})" if changed else "")
    return changed


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if value is None and not prefix:
        return {}
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _shown(value: Any, path: str = "", record: dict[str, Any] | None = None) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    currency = _currency_of(path, record or {})
    if currency and isinstance(value, int) and path.rpartition(".")[2] in MONEY_FIELDS:
        try:
            return format_money(value, currency)
        except (KeyError, ValueError):
            pass  # not a currency we know: the stored number, as the record has it
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _currency_of(path: str, record: dict[str, Any]) -> str | None:
    """The ``currency`` beside ``path`` in its own object, else in the nearest enclosing one, else
    the record's one currency (a retry's ``detail.amount_paid`` beside ``subscription.currency``)."""
    prefix = path.rpartition(".")[0]
    while True:
        found = record.get(f"{prefix}.currency" if prefix else "currency")
        if isinstance(found, str) and found:
            return found
        if not prefix:
            break
        prefix = prefix.rpartition(".")[0]
    anywhere = {v for k, v in record.items() if k.rpartition(".")[2] == "currency" and isinstance(v, str) and v}
    return anywhere.pop() if len(anywhere) == 1 else None


def entries(engine: Engine, *, actor: str | None = None, member_id: int | None = None, action: str | None = None,
            start: date | None = None, end: date | None = None, tz: str = "UTC",
            limit: int = DEFAULT_LIMIT) -> AuditPage:
    """Audit entries matching every given filter. ``action`` ending in ``.`` or ``*`` is a prefix
    (``member.`` finds every member action)."""
    if start and end and end < start:
        raise AuditQueryError("The end date must be on or after the start date.")
    z = zone(tz)
    q = select(AuditEntry)
    if actor:
        q = q.where(AuditEntry.actor == actor.strip())
    if member_id is not None:
        q = q.where(AuditEntry.member_id == int(member_id))
    if action:
        action = action.strip()
        if action.endswith(("*", ".")):
            q = q.where(AuditEntry.action.startswith(action.rstrip("*"), autoescape=True))
        else:
            q = q.where(AuditEntry.action == action)
    if start:
        q = q.where(AuditEntry.at >= local_midnight(start, z))
    if end:
        q = q.where(AuditEntry.at < local_midnight(end + timedelta(days=1), z))
    q = q.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit + 1)
    with Session(engine) as s:
        found = list(s.scalars(q))
    truncated = len(found) > limit
    rows = [{
        "at": a.at.astimezone(z), "actor": a.actor, "action": a.action, "member_id": a.member_id,
        "target_type": a.target_type, "target_id": a.target_id, "what_changed": _changed_or_refused(a),
        "reason": a.reason, "comment": a.comment,
        "outcome": a.outcome, "approved_by": a.approved_by, "request_id": a.request_id,
        "before": as_json_text(a.before), "after": as_json_text(a.after),
    } for a in found[:limit]]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["member_id"] = frame["member_id"].astype("Int64")
    return AuditPage(rows=frame, truncated=truncated)


def facets(engine: Engine) -> tuple[list[str], list[str]]:
    """The staff names and actions that occur in the log (for filter pick lists)."""
    with Session(engine) as s:
        actors = sorted(a for (a,) in s.execute(select(AuditEntry.actor).distinct()) if a)
        actions = sorted(a for (a,) in s.execute(select(AuditEntry.action).distinct()) if a)
    return actors, actions
