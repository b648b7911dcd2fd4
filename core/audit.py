"""The one way to write the audit log. Append-only: there is deliberately no update or delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.models import AuditEntry
from core.timeutil import utc_now


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    member_id: int | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    reason: str | None = None,
    comment: str | None = None,
    before: Any = None,
    after: Any = None,
    stripe_ids: Any = None,
    request_id: str | None = None,
    approved_by: str | None = None,
    outcome: str = "ok",
) -> AuditEntry:
    """Add an audit entry to ``session``; it commits with the change it describes."""
    entry = AuditEntry(
        at=utc_now(), actor=actor, action=action, member_id=member_id, target_type=target_type,
        target_id=None if target_id is None else str(target_id), reason=reason, comment=comment,
        before=before, after=after, stripe_ids=stripe_ids, request_id=request_id,
        approved_by=approved_by, outcome=outcome,
    )
    session.add(entry)
    return entry
