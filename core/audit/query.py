"""Reading the audit log for people: filter by staff, member, action and dates.

Guarantees: read-only (the log is append-only; ``core.audit`` is the only writer); dates are local
calendar days in the given time zone, half-open ``[start, end + 1 day)``; results are plain
DataFrames with timestamps in that zone, newest first, at most ``limit`` rows (the caller is told
when the limit cut the list); ``before``/``after`` come back decrypted as compact JSON text.
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
from core.timeutil import local_midnight, zone

DEFAULT_LIMIT = 2000
COLUMNS = ["at", "actor", "action", "member_id", "target_type", "target_id", "reason", "comment", "outcome",
           "approved_by", "request_id", "before", "after"]


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
        "target_type": a.target_type, "target_id": a.target_id, "reason": a.reason, "comment": a.comment,
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
