"""Four-eyes approval of queued changes, and resuming interrupted ones.

A request above the approval amount waits as ``pending_approval``. A second person with
``APPROVE_CHANGES`` (never the requester) approves it, which re-checks it against the member's
current state with the approver's own role and limits and then applies it through
``service.execute``, or rejects it with a note. Both decisions are audited; the status moves
with a conditional UPDATE, so two approvers at once cannot both decide.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from core import audit
from core.changes import parse
from core.changes.actions import Ctx
from core.changes.errors import ChangeRefused
from core.changes.limits import load_limits
from core.changes.model import Actor, Outcome
from core.changes.service import (
    APPLYING,
    PENDING,
    REJECTED,
    _action,
    _blocking,
    _execute,
    _load,
    _outcome_of,
    _seal,
    _unseal,
    execute,
)
from core.db import affected_rows, session_scope
from core.models import ChangeRequest
from core.permissions import Permission, PermissionDenied, allowed, check, guarded, record_refusal
from core.timeutil import utc_now

if TYPE_CHECKING:
    from core.stripe_gateway import StripeClient


@guarded(None)  # checks APPROVE_CHANGES itself: a refusal is a ChangeRefused sentence for the form
def decide(engine: Engine, request_id: int, actor: Actor, *, approve: bool, note: str, stripe: StripeClient | None = None,
           now: datetime | None = None) -> Outcome:
    """Approve (and apply) or reject a pending request. The requester cannot decide their own."""
    now = now or utc_now()
    _require(engine, actor, Permission.APPROVE_CHANGES, "decide")
    note = parse.text(note, "note for your decision", max_len=2000)
    with session_scope(engine) as s:
        req = _request(s, request_id)
        if req.status != PENDING:
            raise ChangeRefused(f"This request is no longer waiting (it is {req.status.replace('_', ' ')}).")
        if actor.is_same_person(req.requested_by):
            raise ChangeRefused("You asked for this change; a second person must approve or reject it.")
        action = _action(req.action)
        if approve:
            if not allowed(actor.roles, action.permission):
                record_refusal(engine, actor, action.permission, "core.changes.approvals.decide")
                raise ChangeRefused("Your role may not make this change, so it cannot approve it either.",
                                    code="permission")
            member = _load(s, req.member_id)
            if _blocking(s, member.id, req.idempotency_key) is not None:  # one change in flight per member
                raise ChangeRefused("An earlier change for this member is still being applied; finish it on the "
                                    "Membership changes page (Resume) before approving this one.", code="busy")
            ctx = Ctx(s, member, actor, now, load_limits(s), stripe, req.reason, req.comment, request_id=req.id)
            raw, comment = _unseal(req)
            ctx.comment = comment
            plan = action.plan(ctx, raw)
            params, _ = _seal(action, plan.params, comment)
            ids = plan.stripe_ids or None
    with session_scope(engine) as s:
        values: dict[str, Any] = {"status": APPLYING if approve else REJECTED, "decided_by": actor.username,
                                  "decided_at": now, "decision_note": note}
        if approve:
            values |= {"params": params, "stripe_ids": ids}
        moved = affected_rows(s.execute(update(ChangeRequest).where(ChangeRequest.id == request_id,
                                                      ChangeRequest.status == PENDING).values(**values)))
        if not moved:
            raise ChangeRefused("Someone else decided this request a moment ago.")
        req = _request(s, request_id)
        audit.record(s, actor=actor.username, action=f"change.{req.action}.{'approved' if approve else 'rejected'}",
                     member_id=req.member_id, reason=req.reason, comment=note,
                     after={"params": req.params, "requested_by": req.requested_by},
                     request_id=req.idempotency_key, approved_by=actor.username if approve else None)
        if not approve:
            return _outcome_of(req, replayed=False)
    return _execute(engine, request_id, stripe=stripe, now=now, approved_by=actor.username, planned=plan)


@guarded(None)  # checks REFUND itself (only refunds wait for approval), refusing with a sentence
def withdraw(engine: Engine, request_id: int, actor: Actor, *, note: str, now: datetime | None = None) -> Outcome:
    """The requester takes back their own request while it waits for approval: nothing is made.
    It waited for a second person's Reject, and meanwhile blocked another refund of the payment."""
    now = now or utc_now()
    _require(engine, actor, Permission.REFUND, "withdraw")
    note = parse.text(note, "note saying why you withdraw it", max_len=2000)
    with session_scope(engine) as s:
        req = _request(s, request_id)
        if not actor.is_same_person(req.requested_by):
            raise ChangeRefused("Only the person who asked for a change can withdraw it; an approver rejects it.")
        moved = affected_rows(s.execute(update(ChangeRequest).where(ChangeRequest.id == request_id,
                                                                    ChangeRequest.status == PENDING).values(
            status=REJECTED, decided_by=actor.username, decided_at=now, decision_note=f"Withdrawn: {note}")))
        if not moved:
            s.rollback()
            req = _request(s, request_id)
            raise ChangeRefused(f"This request is no longer waiting (it is {req.status.replace('_', ' ')}).")
        s.refresh(req)
        audit.record(s, actor=actor.username, action=f"change.{req.action}.withdrawn", member_id=req.member_id,
                     reason=req.reason, comment=note, after={"params": req.params, "requested_by": req.requested_by},
                     request_id=req.idempotency_key)
        return Outcome(REJECTED, req.id, "The request was withdrawn; nothing was changed.", req.idempotency_key,
                       result=req.result)


@guarded(None)  # checks CHANGE_MEMBERSHIP itself, refusing with a ChangeRefused sentence
def resume(engine: Engine, request_id: int, actor: Actor, *, stripe: StripeClient | None = None,
           now: datetime | None = None) -> Outcome:
    """Finish a request left ``applying`` by a crash or an outage (exactly once)."""
    _require(engine, actor, Permission.CHANGE_MEMBERSHIP, "resume")
    return execute(engine, request_id, stripe=stripe, now=now or utc_now(), resuming=True)


def _require(engine: Engine, actor: Actor, permission: Permission, function: str) -> None:
    """The permission check (audited when refused), its refusal as the sentence a form shows."""
    try:
        check(actor, permission, bind=engine, where=f"core.changes.approvals.{function}")
    except PermissionDenied as exc:
        raise ChangeRefused(str(exc), code="permission") from None


def _request(s: Session, request_id: int) -> ChangeRequest:
    req = s.get(ChangeRequest, request_id) if isinstance(request_id, int) else None
    if req is None:
        raise ChangeRefused("This change request does not exist.")
    return req
