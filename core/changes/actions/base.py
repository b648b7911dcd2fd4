"""The shape of one manual action, and the registry the service looks actions up in.

An action does three things, each small and testable:
- ``plan``: validate the raw form values against the member's current state and return the
  normalised parameters (stored in ``change_requests.params``) with a preview. Read-only;
  it may ask Stripe for a preview (never for a write). Raises ``ChangeRefused``.
- ``call_stripe``: the one Stripe write, carrying the request's idempotency key; and
  ``find_applied``: after an ambiguous failure or a crash, look in Stripe for proof that the
  write already happened, so a retry completes exactly once.
- ``write``: record the outcome in our database (inside the service's transaction) and return
  the "after" state for the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.changes import parse
from core.changes.errors import LIMIT, ChangeRefused
from core.changes.limits import Limits
from core.changes.model import Actor, Preview
from core.changes.repeats import LIVE
from core.models import ChangeRequest, Member, MembershipChange, Subscription
from core.permissions import Permission

if TYPE_CHECKING:
    from core.stripe_gateway import StripeClient

ACTIONS: dict[str, Action] = {}  # filled as the action classes are defined


@dataclass
class Ctx:
    session: Session
    member: Member
    actor: Actor
    now: datetime
    limits: Limits
    stripe: StripeClient | None = None  # built by core.stripe_gateway; None without Stripe
    reason: str = ""
    comment: str = ""
    request_id: int | None = None  # set when an existing request is re-planned (approval)

    @property
    def client(self) -> StripeClient:
        """The Stripe client, for a step that calls Stripe (its plan ran ``require_customer``)."""
        if self.stripe is None:
            raise ChangeRefused("Stripe is not configured here, so changes that go through Stripe are unavailable.")
        return self.stripe


@dataclass
class Plan:
    params: dict[str, Any]
    preview: Preview
    stripe_ids: dict[str, Any] = field(default_factory=dict)


class Action:
    """One manual action. A concrete action names itself in its class statement, which registers
    it in ``ACTIONS``: ``class Pause(Action, name="pause", title="...", permission=...)``."""

    name: ClassVar[str]
    title: ClassVar[str]
    permission: ClassVar[Permission]
    uses_stripe: ClassVar[bool] = True
    sensitive: ClassVar[bool] = False  # params/comment hold personal data: stored encrypted

    def __init_subclass__(cls, *, name: str | None = None, title: str | None = None,
                          permission: Permission | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is None:
            return  # a shared base such as the subscription actions'
        if title is None or permission is None:
            raise TypeError(f"The action {name!r} needs a title and a permission.")
        cls.name, cls.title, cls.permission = name, title, permission
        ACTIONS[name] = cls()

    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        raise NotImplementedError

    def needs_stripe(self, ctx: Ctx, plan: Plan) -> bool:
        return self.uses_stripe

    def call_stripe(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any]:
        """Make the Stripe write; return the Stripe objects as dicts keyed by kind."""
        raise NotImplementedError

    def find_applied(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any] | None:
        """The Stripe objects proving the write already happened, or None."""
        return None

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def require_customer(ctx: Ctx) -> str:
    if ctx.member.deleted_in_stripe_at is not None:
        raise ChangeRefused("This member's customer was deleted in Stripe, so Stripe cannot change it.")
    if not ctx.member.stripe_customer_id:
        raise ChangeRefused("This member has no Stripe customer, so there is nothing to change in Stripe.")
    if ctx.stripe is None:
        raise ChangeRefused("Stripe is not configured here, so changes that go through Stripe are unavailable.")
    return ctx.member.stripe_customer_id


def allowed_days(ctx: Ctx, raw: Any, verb: str, ask: str) -> int:
    """The days typed, within the most generous day limit of the person's roles, counting the free
    days already given to this member within the limits' window: three grants of 30 days in a
    minute gave 90 under a 30-day limit (refunds were counted so; free days were not). ``ask``:
    what a refusal tells the person to ask the next role up for ("for more")."""
    days = parse.whole_number(raw, "number of days", low=1, high=3650)
    allowed = ctx.limits.max_extend_days(ctx.actor.roles)
    # A manager was told to "ask a manager": the next role up is an admin's.
    ask = f"ask {'an admin' if 'manager' in ctx.actor.roles else 'a manager'} {ask}"
    if allowed is None:
        return days
    if days > allowed:
        raise ChangeRefused(f"Your role may {verb} at most {allowed} days; {ask}.", code=LIMIT)
    given = _days_given_recently(ctx)
    if given + days > allowed:
        hours = ctx.limits.refund_window_hours
        raise ChangeRefused(f"Your role may {verb} at most {allowed} days to a member in {hours} hours; {given} "
                            f"{'day was' if given == 1 else 'days were'} already given to this member in the last "
                            f"{hours} hours, so {_more(allowed - given)}; {ask}.", code=LIMIT)
    return days


def _more(days: int) -> str:
    return "no more" if days <= 0 else f"at most {days} more"


def _days_given_recently(ctx: Ctx) -> int:
    """Free days (added or granted) to this member in requests made, being made or waiting for
    approval within the limits' window, the request being decided excepted."""
    since = ctx.now - timedelta(hours=ctx.limits.refund_window_hours)
    rows = ctx.session.execute(select(ChangeRequest.id, ChangeRequest.params).where(
        ChangeRequest.member_id == ctx.member.id, ChangeRequest.action.in_(("extend", "grant_comp")),
        ChangeRequest.status.in_(LIVE), ChangeRequest.requested_at >= since)).all()
    return sum(int(params.get("days") or 0) for rid, params in rows
               if rid != ctx.request_id and isinstance(params, dict))


def record_staff_change(ctx: Ctx, sub: Subscription, kind: str, *, from_status: str | None,
                        from_tier_id: int | None, reason: str | None) -> None:
    """The ``membership_changes`` row of a change made in our database only (no MRR: complimentary)."""
    ctx.session.add(MembershipChange(
        member_id=ctx.member.id, subscription_id=sub.id, effective_at=ctx.now, kind=kind,
        from_status=from_status, to_status=sub.status, from_tier_id=from_tier_id, to_tier_id=sub.tier_id,
        currency=sub.currency, mrr_before_minor=0, mrr_after_minor=0, reason=reason, source="staff",
        actor=ctx.actor.username, recorded_at=ctx.now))
