"""The one service every membership-change form calls. What it guarantees:

- **Permission** is checked here (``core.permissions`` plus the admin-set limits), never only by
  hiding a button; a refusal is audited.
- **Reason and comment** are required; the reason comes from ``core.changes.reasons``.
- **Nothing is written for bad input**: ``plan`` validates everything against the current state
  before the first write; a refusal is a ``ChangeRefused`` sentence.
- **Idempotency**: the key is derived from the action, the member, the form's version and the
  values typed, so a double click or a retried request finds the same ``change_requests`` row
  and never acts twice. The Stripe write carries a Stripe idempotency key derived from it.
- **Concurrency**: the request is claimed with ``UPDATE members SET version = v + 1 WHERE
  version = v``; a form loaded at an older version is refused with the fresh state
  (``StaleMember``), and of two agents at the same moment exactly one wins.
- **Stripe first, then our database in one transaction.** The claim commits (status
  ``applying``) before Stripe is called; the result is written with the audit entry and the
  status ``applied`` in one transaction whose first statement moves ``applying -> applied``
  conditionally, so two finishers never both write. A crash or an ambiguous Stripe failure
  (timeout, 5xx) leaves ``applying``: resubmitting the same form, or ``resume``, first asks
  Stripe whether the write already happened (``find_applied``) and only then writes again with
  the same idempotency key. While a member has an ``applying`` request, new changes wait.
- **Planned once, Stripe read once**: ``submit`` (and ``decide``) plan the change once and apply
  that plan; only ``resume`` and a replay apply the stored parameters. What the plan read from
  Stripe (a refund's charge) is not read again: the write's answer carries the new state.
- **What Stripe creates is stored with the change**: the invoice and charge a write makes Stripe
  create (a tier change "now", a reactivation, a retried invoice) are written in the change's
  transaction (``core.changes.created``), so their webhooks find them stored and move nothing.
- **One version step per transaction**: the member's version is raised only through
  ``core.stripe_store.bump_version``, once per member and transaction (the claim, or the rows the
  change wrote), so a change made without Stripe moves it by one and one through Stripe by two.
- **Four-eyes**: a request that needs approval waits as ``pending_approval``; someone else with
  ``APPROVE_CHANGES`` (and the limits for the amount) approves or rejects it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from core import audit, crypto, stripe_store
from core.changes import parse
from core.changes.actions import ACTIONS, Action, Ctx, Plan
from core.changes.errors import LIMIT, ChangeRefused, StaleMember
from core.changes.limits import load_limits
from core.changes.model import Actor, ChangeInput, Outcome, Preview
from core.changes.reasons import REASONS
from core.changes.state import member_snapshot
from core.db import affected_rows, session_scope
from core.models import ChangeRequest, Member
from core.permissions import PermissionDenied, guarded, require
from core.sync.failures import failure_text
from core.timeutil import utc_now

log = logging.getLogger(__name__)

PENDING, APPROVED, REJECTED, APPLYING, APPLIED, FAILED = (
    "pending_approval", "approved", "rejected", "applying", "applied", "failed")


SEALED_COMMENT = "(kept encrypted with the request)"
DEADLOCK, DEADLOCK_TRIES = "40P01", 3  # PostgreSQL's deadlock_detected; attempts at the write


def _seal(action: Action, params: dict[str, Any], comment: str) -> tuple[dict[str, Any], str]:
    """Contact details and note bodies are encrypted at rest everywhere, the queue included."""
    if not action.sensitive:
        return params, comment
    token = crypto.keyring().encrypt(json.dumps({"params": params, "comment": comment}, sort_keys=True))
    return {"sealed": token}, SEALED_COMMENT


def _unseal(req: ChangeRequest) -> tuple[dict[str, Any], str]:
    params = dict(req.params or {})
    if "sealed" in params and len(params) == 1:
        data = json.loads(crypto.keyring().decrypt(params["sealed"]))
        return dict(data["params"]), str(data["comment"])
    return params, req.comment


def derive_key(change: ChangeInput) -> str:
    """Same action, member, form version and typed values -> same key (reason/comment excluded,
    so fixing a typo in the comment cannot turn a retry into a second refund)."""
    raw = json.dumps([change.action, change.member_id, change.member_version, change.params],
                     sort_keys=True, default=str)
    return "chg-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def _action(name: Any) -> Action:
    action = ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        raise ChangeRefused("This action does not exist.")
    return action


def _check_basics(change: ChangeInput, actor: Actor, action: Action) -> tuple[str, str]:
    if not isinstance(actor, Actor):
        raise TypeError("A membership change takes the acting staff member as core.permissions.Actor.")
    require(actor.roles, action.permission)
    reason = parse.choice(change.reason, REASONS[action.name], "reason")
    comment = parse.text(change.comment, "comment", max_len=2000)
    if isinstance(change.member_id, bool) or not isinstance(change.member_id, int):
        raise ChangeRefused("No member is selected.")
    if isinstance(change.member_version, bool) or not isinstance(change.member_version, int):
        raise ChangeRefused("The form is missing the member's version; reload the page.")
    if not isinstance(change.params, dict):
        raise ChangeRefused("The form sent values we cannot read; reload the page.")
    return reason, comment


def _accept(change: ChangeInput, actor: Actor, *,
            refused: Callable[[str], None] | None = None) -> tuple[Action, str, str]:
    """The action, reason and comment of a well-formed change the actor may make; a permission
    refusal is a ``ChangeRefused``, told to ``refused`` first (a submit audits it, a preview not)."""
    action = _action(change.action)
    try:
        reason, comment = _check_basics(change, actor, action)
    except PermissionDenied as exc:
        if refused is not None:
            refused(str(exc))
        raise ChangeRefused(str(exc), code="permission") from None
    return action, reason, comment


def _audit_refusal(engine: Engine, actor: Actor, change: ChangeInput, sentence: str) -> None:
    member_id = change.member_id if isinstance(change.member_id, int) else None
    with session_scope(engine) as s:
        audit.record(s, actor=actor.username, action=f"change.{change.action}"[:64], member_id=member_id,
                     comment=sentence, outcome="refused")


def _load(session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise ChangeRefused("This member does not exist (any more).")
    return member


def _blocking(session: Session, member_id: int, key: str) -> ChangeRequest | None:
    return session.scalar(select(ChangeRequest).where(
        ChangeRequest.member_id == member_id, ChangeRequest.status == APPLYING,
        ChangeRequest.idempotency_key != key).limit(1))


def preview(engine: Engine, change: ChangeInput, actor: Actor, *, stripe: Any = None,
            now: datetime | None = None) -> Preview:
    """What ``submit`` would do, without writing anything but the audit entry of a refusal by the
    admin-set limits. Raises ``ChangeRefused``."""
    now = now or utc_now()
    action, reason, comment = _accept(change, actor)
    with session_scope(engine) as s:
        member = _load(s, change.member_id)
        if member.version != change.member_version:
            raise StaleMember(member_snapshot(s, member), member.version)
        ctx = Ctx(s, member, actor, now, load_limits(s), stripe, reason, comment)
        try:
            plan = action.plan(ctx, dict(change.params))
        except ChangeRefused as exc:
            s.rollback()
            if exc.code == LIMIT:  # asked beyond the admin-set limits: on record, as a refusal by role is
                _audit_refusal(engine, actor, change, exc.sentence)
            raise
        s.rollback()
        return plan.preview


@guarded(None)  # the permission is the action's: checked in _check_basics, the refusal audited below
def submit(engine: Engine, change: ChangeInput, actor: Actor, *, stripe: Any = None,
           now: datetime | None = None) -> Outcome:
    """Validate, claim, and apply (or queue for approval) one change. Raises ``ChangeRefused``."""
    now = now or utc_now()
    action, reason, comment = _accept(
        change, actor, refused=lambda sentence: _audit_refusal(engine, actor, change, sentence))
    key = derive_key(change)

    with session_scope(engine) as s:
        existing = s.scalar(select(ChangeRequest).where(ChangeRequest.idempotency_key == key))
        if existing is not None:
            request_id = existing.id
        else:
            request_id = None
            member = _load(s, change.member_id)
            if _blocking(s, member.id, key) is not None:
                raise ChangeRefused("An earlier change for this member is still being applied; finish it on the "
                                    "Membership changes page (Resume) before making another.", code="busy")
            if member.version != change.member_version:
                # The same request may have been claimed a moment ago (a double click): replay it.
                existing = s.scalar(select(ChangeRequest).where(ChangeRequest.idempotency_key == key))
                if existing is None:
                    raise StaleMember(member_snapshot(s, member), member.version)
                request_id = existing.id
            else:
                ctx = Ctx(s, member, actor, now, load_limits(s), stripe, reason, comment)
                try:
                    plan = action.plan(ctx, dict(change.params))
                except ChangeRefused as exc:
                    # PostgreSQL reads each statement at its own moment: another agent's change may
                    # have committed between the version check and the plan's reads. Then the form
                    # is out of date, which is what the agent needs to hear, not the plan's verdict
                    # on a state they have not seen.
                    s.refresh(member, ["version"])
                    if member.version != change.member_version:
                        raise StaleMember(member_snapshot(s, member), member.version) from None
                    if exc.code == LIMIT:  # beyond the admin-set limits: on record, as a refusal by role is
                        s.rollback()  # this read ends before the audit's own transaction writes
                        _audit_refusal(engine, actor, change, exc.sentence)
                    raise
    if request_id is not None:
        return _replay(engine, request_id, stripe=stripe, now=now)

    status = PENDING if plan.preview.needs_approval else APPLYING
    done: Outcome | None = None
    try:
        with session_scope(engine) as s:
            if not stripe_store.bump_version(s, change.member_id, expected=change.member_version):
                raise _Lost()
            stored_params, stored_comment = _seal(action, plan.params, comment)
            req = ChangeRequest(
                idempotency_key=key, action=action.name, member_id=change.member_id, params=stored_params,
                reason=reason, comment=stored_comment, member_version=change.member_version, status=status,
                requested_by=actor.username, requested_at=now, stripe_ids=plan.stripe_ids or None,
                result={"preview": _preview_json(plan.preview)},
            )
            s.add(req)
            s.flush()
            request_id = req.id
            if status == APPLYING and not action.needs_stripe(ctx, plan):
                # Nothing to ask Stripe: claim, rows, audit and status in this one transaction.
                req.status, req.applied_at = APPLIED, now
                done = _finish(s, req, action, plan, comment, {}, now, stripe, None, resuming=False)
            elif status == PENDING:
                audit.record(s, actor=actor.username, action=f"change.{action.name}.requested",
                             member_id=change.member_id, reason=reason, comment=stored_comment,
                             before=member_snapshot(s, _load(s, change.member_id)),
                             after={"params": stored_params, "approval_reason": plan.preview.approval_reason},
                             request_id=key, outcome="pending")
    except (_Lost, IntegrityError):
        # Either the same request was claimed a moment ago (a double click) or another change won.
        with session_scope(engine) as s:
            existing = s.scalar(select(ChangeRequest).where(ChangeRequest.idempotency_key == key))
            if existing is not None:
                request_id = existing.id
            else:
                member = _load(s, change.member_id)
                raise StaleMember(member_snapshot(s, member), member.version) from None
        return _replay(engine, request_id, stripe=stripe, now=now)

    if done is not None:
        _refresh_metrics(engine, now)
        return done
    if status == PENDING:
        return Outcome(PENDING, request_id, "The change waits for a second person's approval "
                       f"({plan.preview.approval_reason}).", key)
    return _execute(engine, request_id, stripe=stripe, now=now, planned=plan)


class _Lost(Exception):
    """The conditional version bump matched no row."""


def _preview_json(p: Preview) -> dict[str, Any]:
    data = asdict(p)
    data["new_period_end"] = p.new_period_end.isoformat() if p.new_period_end else None
    return data


def _outcome_of(req: ChangeRequest, *, replayed: bool) -> Outcome:
    messages = {
        APPLIED: "Done." if not replayed else "This change was already made; it was not made twice.",
        PENDING: "The change waits for a second person's approval.",
        REJECTED: f"The change was rejected by {req.decided_by}.",
        FAILED: f"The change failed: {req.error}",
        APPLYING: "The change is being applied.",
    }
    return Outcome(req.status, req.id, messages.get(req.status, req.status), req.idempotency_key,
                   replayed=replayed, result=req.result)


def _replay(engine: Engine, request_id: int, *, stripe: Any, now: datetime) -> Outcome:
    """The same request again: answer what happened, or finish it if it was interrupted."""
    with session_scope(engine) as s:
        req = s.get(ChangeRequest, request_id)
        assert req is not None
        if req.status != APPLYING:
            return _outcome_of(req, replayed=True)
    outcome = execute(engine, request_id, stripe=stripe, now=now, resuming=True)
    outcome.replayed = True
    return outcome


def execute(engine: Engine, request_id: int, *, stripe: Any = None, now: datetime | None = None,
            resuming: bool = False, approved_by: str | None = None) -> Outcome:
    """Apply a request in status ``applying``: Stripe first, then our rows, audit and status."""
    return _execute(engine, request_id, stripe=stripe, now=now or utc_now(), resuming=resuming,
                    approved_by=approved_by)


def _execute(engine: Engine, request_id: int, *, stripe: Any, now: datetime, resuming: bool = False,
             approved_by: str | None = None, planned: Plan | None = None) -> Outcome:
    """``execute`` with the plan the caller made a moment ago (``submit``, ``decide``), so a change
    is planned once; without one (``resume``, a replay) the stored parameters are the plan."""
    from core.stripe_gateway import GatewayError

    with session_scope(engine) as s:
        req = s.get(ChangeRequest, request_id)
        if req is None:
            raise ChangeRefused("This change request does not exist.")
        if req.status != APPLYING:
            return _outcome_of(req, replayed=True)
        action = _action(req.action)
        member = _load(s, req.member_id)
        actor = Actor(req.requested_by, frozenset())
        params, comment = _unseal(req)
        ctx = Ctx(s, member, actor, now, load_limits(s), stripe, req.reason, comment)
        plan = planned or Plan(params=params, preview=Preview(action.name, []),
                               stripe_ids=dict(req.stripe_ids or {}))
        key = req.idempotency_key
        # The member as they were before Stripe was asked: the webhook of Stripe's own answer can
        # reach our rows before they are written below, and a snapshot taken then recorded the
        # change's result as its "before" (a cancel's audit entry showed no cancel).
        before = member_snapshot(s, member)
        uses_stripe = action.needs_stripe(ctx, plan)
        stripe_result: dict[str, Any] = {}
        if uses_stripe:
            try:
                if stripe is None:
                    raise ChangeRefused("Stripe is not configured here, so this change cannot be made now.")
                found = action.find_applied(ctx, plan, key) if resuming else None
                stripe_result = found if found is not None else action.call_stripe(ctx, plan, key)
            except GatewayError as exc:
                ambiguous = exc.kind in {"unreachable", "idempotency"} or (exc.http_status or 0) >= 500
                if ambiguous:
                    found = _safe_find(action, ctx, plan, key)
                    if found is None:
                        s.rollback()
                        _note_error(engine, request_id, exc.sentence)
                        raise ChangeRefused(
                            f"{exc.sentence} The change is kept as “being applied”; submitting it again (or "
                            "Resume on the Membership changes page) finishes it without doing it twice.",
                            code="stripe_unavailable") from None
                    stripe_result = found
                else:
                    s.rollback()
                    _fail(engine, request_id, exc.sentence, approved_by)
                    raise ChangeRefused(exc.sentence, code="stripe_refused") from None
            except ChangeRefused as exc:
                s.rollback()
                _fail(engine, request_id, exc.sentence, approved_by)
                raise
            except Exception as exc:
                s.rollback()
                raise _kept_applying(engine, request_id, exc) from exc
        s.rollback()  # end the read transaction before writing

    for attempt in range(1, DEADLOCK_TRIES + 1):
        try:
            with session_scope(engine) as s:
                moved = affected_rows(s.execute(
                    update(ChangeRequest).where(ChangeRequest.id == request_id, ChangeRequest.status == APPLYING)
                    .values(status=APPLIED, applied_at=now)
                ))
                if not moved:  # someone else finished it a moment ago
                    s.rollback()
                    req = s.get(ChangeRequest, request_id)
                    assert req is not None
                    return _outcome_of(req, replayed=True)
                req = s.get(ChangeRequest, request_id)
                assert req is not None
                outcome = _finish(s, req, action, plan, comment, stripe_result, now, stripe, approved_by,
                                  resuming=resuming, before=before)
            break
        except OperationalError as exc:
            # PostgreSQL: the webhook pass storing the same new invoice and charge at this moment
            # can lock rows in the other order; one of the two is undone. Ours is written again:
            # nothing of it was kept, and Stripe's answer is still in hand.
            if attempt == DEADLOCK_TRIES or getattr(exc.orig, "sqlstate", None) != DEADLOCK:
                raise _kept_applying(engine, request_id, exc) from exc
            log.info("change write met a deadlock, writing it again: request=%s", request_id)
        except ChangeRefused:
            raise
        except Exception as exc:
            raise _kept_applying(engine, request_id, exc) from exc
    _refresh_metrics(engine, now)
    return outcome


def _refresh_metrics(engine: Engine, now: datetime) -> None:
    """After the change committed: ask for the metric rollups to be brought up to date for the
    day(s) it wrote (its membership change is effective at ``now``; Stripe dates its refund or
    invoice by its own clock, which may be a little earlier). The refresh runs in the background
    (seconds): the change answers without waiting for it, and the member page reads the rows."""
    from core.metrics import refresher

    since = min(now, utc_now()) - timedelta(minutes=5)
    refresher.request(engine, since, what="a membership change")


def _finish(s: Session, req: ChangeRequest, action: Action, plan: Plan, comment: str,
            stripe_result: dict[str, Any], now: datetime, stripe: Any, approved_by: str | None, *,
            resuming: bool, before: dict[str, Any] | None = None) -> Outcome:
    """Our rows, the member's version, the request's result and the audit entry (caller commits).
    ``before``: the member as they were before Stripe was asked (else as they are now)."""
    member = _load(s, req.member_id)
    if before is None:
        before = member_snapshot(s, member)
    ctx = Ctx(s, member, Actor(req.requested_by, frozenset()), now, load_limits(s), stripe, req.reason, comment)
    after_detail = action.write(ctx, plan, stripe_result)
    s.flush()
    stripe_store.bump_version(s, member.id)  # once: not again if the claim or the mirror raised it
    s.refresh(member)
    ids = _stripe_ids(stripe_result) | dict(req.stripe_ids or {})
    result = dict(req.result or {}) | {"detail": after_detail}
    req.result, req.stripe_ids, req.error = result, ids or None, None
    audit.record(s, actor=req.requested_by, action=f"change.{action.name}", member_id=member.id,
                 reason=req.reason, comment=req.comment, before=before,
                 after=member_snapshot(s, member) | {"detail": after_detail},
                 stripe_ids=ids or None, request_id=req.idempotency_key,
                 approved_by=approved_by or req.decided_by)
    log.info("change applied: action=%s member=%s request=%s", action.name, member.id, req.id)
    if resuming:
        return Outcome(APPLIED, req.id, "Done (an interrupted attempt was finished; nothing was done twice).",
                       req.idempotency_key, result=req.result)
    return _outcome_of(req, replayed=False)


def _safe_find(action: Action, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any] | None:
    from core.stripe_gateway import GatewayError

    try:
        return action.find_applied(ctx, plan, key)
    except GatewayError:
        return None


def _stripe_ids(result: dict[str, Any]) -> dict[str, Any]:
    """The ids of the Stripe objects a change wrote (a list of them, such as the charges, as a list)."""
    ids: dict[str, Any] = {}
    for kind, obj in result.items():
        if isinstance(obj, list):
            if found := [i for i in (_id_of(o) for o in obj) if i]:
                ids[kind] = found
        elif oid := _id_of(obj):
            ids[kind] = oid
    return ids


def _id_of(obj: Any) -> str | None:
    oid = obj.get("id") if isinstance(obj, dict) else getattr(obj, "id", None)
    return oid if isinstance(oid, str) else None


def _kept_applying(engine: Engine, request_id: int, exc: Exception) -> ChangeRefused:
    """An unexpected failure after the request was claimed (Stripe's answer unread, or our rows not
    written): the request stays "being applied", with the error on it, and the person is told how it
    is finished. The page said only that the forms "hit an error", and the request sat there with
    no trace of why."""
    log.exception("change request %s stopped while being applied", request_id)
    try:
        _note_error(engine, request_id, failure_text(exc)[:500])  # shown on the Membership changes page
    except Exception:  # the database itself is what failed: the log line above keeps the error
        log.exception("change request %s: the error could not be recorded", request_id)
    return ChangeRefused("The change stopped part-way, before our records were written. It is kept as “being "
                         "applied”: Resume on the Membership changes page finishes it without doing it twice.",
                         code="stripe_unavailable")


def _note_error(engine: Engine, request_id: int, sentence: str) -> None:
    log.warning("change left applying after an ambiguous Stripe failure: request=%s", request_id)
    with session_scope(engine) as s:
        s.execute(update(ChangeRequest).where(ChangeRequest.id == request_id, ChangeRequest.status == APPLYING)
                  .values(error=sentence))


def _fail(engine: Engine, request_id: int, sentence: str, approved_by: str | None) -> None:
    """Stripe said no (or the state no longer allows it): nothing changed; record why."""
    log.info("change failed: request=%s", request_id)
    with session_scope(engine) as s:
        req = s.get(ChangeRequest, request_id)
        assert req is not None
        moved = affected_rows(s.execute(update(ChangeRequest).where(ChangeRequest.id == request_id,
                                                      ChangeRequest.status == APPLYING)
                          .values(status=FAILED, error=sentence)))
        if moved:
            audit.record(s, actor=req.requested_by, action=f"change.{req.action}", member_id=req.member_id,
                         reason=req.reason, comment=req.comment, after={"params": req.params, "error": sentence},
                         request_id=req.idempotency_key, approved_by=approved_by, outcome="failed")
