"""Complimentary memberships end by themselves.

A complimentary membership lives in our database only (no Stripe subscription, so no Stripe event
ever ends it): its grant sets ``cancel_at`` to the end of the free days. ``end_due`` ends every
one whose end has passed, as a cancellation at that moment would: status canceled, ended then, a
``membership_changes`` row and an audit entry by ``system``, the member's version raised (a form
opened before it is out of date). Each server runs it every minute (``Ender``); two servers at
once end each membership once (the status is checked in the UPDATE itself).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update

from core import audit
from core.daemon import Daemon
from core.db import affected_rows, session_scope
from core.models import MembershipChange, Subscription
from core.models.enums import ChangeSource, SubscriptionStatus
from core.timeutil import ensure_aware, utc_now

log = logging.getLogger(__name__)

EVERY = timedelta(minutes=1)
ACTOR = "system"


def end_due(engine: Engine, now: datetime | None = None) -> int:
    """End the complimentary memberships whose free days are over; returns how many ended."""
    from core.stripe_store import bump_version

    now = now or utc_now()
    live = sorted(SubscriptionStatus.live())
    ended: list[datetime] = []
    with session_scope(engine) as s:
        due = s.execute(select(Subscription.id, Subscription.member_id, Subscription.status, Subscription.cancel_at,
                               Subscription.tier_id, Subscription.currency)
                        .where(Subscription.complimentary.is_(True), Subscription.status.in_(live),
                               Subscription.cancel_at.is_not(None), Subscription.cancel_at <= now)
                        .order_by(Subscription.cancel_at)).all()
        for row in due:
            end = ensure_aware(row.cancel_at)
            took = s.execute(update(Subscription).where(Subscription.id == row.id, Subscription.status.in_(live))
                             .values(status=SubscriptionStatus.CANCELED, ended_at=end, current_period_end=end,
                                     canceled_at=end, updated_at=now))
            if affected_rows(took) != 1:  # ended meanwhile (another server, a staff cancel)
                continue
            s.add(MembershipChange(
                member_id=row.member_id, subscription_id=row.id, effective_at=end, kind="canceled",
                from_status=row.status, to_status=SubscriptionStatus.CANCELED, from_tier_id=row.tier_id,
                to_tier_id=row.tier_id, currency=row.currency, mrr_before_minor=0, mrr_after_minor=0, reason=None,
                source=ChangeSource.SYSTEM, actor=ACTOR, recorded_at=now))
            audit.record(s, actor=ACTOR, action="membership.comp_ended", member_id=row.member_id,
                         target_type="subscription", target_id=row.id,
                         comment="The complimentary membership's free days are over.",
                         before={"status": str(row.status)},
                         after={"status": str(SubscriptionStatus.CANCELED), "ended_at": end.isoformat()})
            bump_version(s, row.member_id)
            ended.append(end)
    if ended:
        from core.metrics import refresher

        log.info("complimentary memberships ended: %d", len(ended))
        refresher.request(engine, min(ended), what="complimentary memberships ended")
    return len(ended)


class Ender(Daemon):
    """A daemon thread running ``end_due`` every ``EVERY``."""

    name = "complimentary-ends"

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                end_due(self.engine)
                failing = False
            except Exception as exc:  # a database away for a moment: the next minute tries again
                if not failing:
                    log.warning("complimentary memberships could not be ended (%s); trying every minute",
                                type(exc).__name__)
                failing = True
            self._stop.wait(EVERY.total_seconds())
