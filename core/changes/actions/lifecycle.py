"""Pause and resume collection, cancel (now or at period end), undo a scheduled cancellation,
reactivate a canceled member, extend (free days on the period or the trial).

Extending a paid period uses Stripe's documented way of moving a billing date without charging:
``trial_end`` set to the new date with ``proration_behavior=none`` (the member is "trialing"
until then, so MRR counts zero during the free days, by the MRR definition).
A complimentary membership (no Stripe subscription) is extended or canceled in our database only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from core.changes import created, mirror, parse
from core.changes.actions.base import Action, Ctx, Plan, allowed_days, record_staff_change, require_customer
from core.changes.errors import ChangeRefused
from core.changes.model import Preview
from core.changes.state import current_subscription, mrr_of
from core.models import Price, Subscription
from core.models.enums import PauseBehavior, SubscriptionStatus
from core.money import format_money
from core.permissions import Permission
from core.timeutil import from_epoch, to_epoch

S = SubscriptionStatus
FEEDBACK = {"too_expensive": "too_expensive", "unused": "unused"}


def _sub(ctx: Ctx, *, if_ended: str | None = None) -> Subscription:
    """The member's current membership; ``if_ended``: the refusal when it has ended."""
    sub = current_subscription(ctx.session, ctx.member.id)
    if sub is None:
        raise ChangeRefused("This member has no membership to change.")
    if if_ended is not None and sub.status in S.ended():
        raise ChangeRefused(if_ended)
    return sub


def _stripe_sub(ctx: Ctx, sub: Subscription) -> str:
    if sub.complimentary or not sub.stripe_subscription_id:
        raise ChangeRefused("This is a complimentary membership kept outside Stripe; only extend or cancel apply.")
    require_customer(ctx)
    return sub.stripe_subscription_id


def _date(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "—"


class _SubscriptionAction(Action):
    """Shared Stripe plumbing: update the subscription, recognise the target state, mirror it."""

    def target(self, plan: Plan) -> dict[str, Any]:
        raise NotImplementedError

    def matches(self, obj: dict[str, Any], plan: Plan) -> bool:
        raise NotImplementedError

    def call_stripe(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any]:
        from core.stripe_gateway import writes

        return _with_invoice(ctx, writes.update_subscription(ctx.client, plan.stripe_ids["subscription"],
                                                             self.target(plan), key=key))

    def find_applied(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any] | None:
        from core.stripe_gateway import writes

        obj = writes.retrieve_subscription(ctx.client, plan.stripe_ids["subscription"])
        return _with_invoice(ctx, obj) if self.matches(obj, plan) else None

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        sub = _mirror(ctx, stripe_result)
        return {"status": sub.status if sub else None, "mrr_minor": sub.mrr_minor if sub else None}


def _with_invoice(ctx: Ctx, sub: dict[str, Any]) -> dict[str, Any]:
    """The subscription Stripe answered, with what it invoiced and charged because of the write."""
    return created.with_invoice(ctx.session, ctx.client, {"subscription": sub}, sub.get("latest_invoice"))


def _mirror(ctx: Ctx, stripe_result: dict[str, Any]) -> Subscription | None:
    """The subscription (signed with the actor and reason), then its new invoice and charges."""
    sub = mirror.subscription(ctx.session, stripe_result["subscription"], state_at=ctx.now,
                              actor=ctx.actor.username, reason=ctx.reason)
    created.store(ctx.session, stripe_result, now=ctx.now)
    return sub


class Pause(_SubscriptionAction, name="pause", title="Pause payment collection",
            permission=Permission.CHANGE_MEMBERSHIP):
    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        sub = _sub(ctx)
        if sub.status in S.ended() or sub.status == S.CANCELED:
            raise ChangeRefused("This membership is canceled, so there is nothing to pause.")
        if sub.pause_behavior:
            raise ChangeRefused("Collection is already paused for this membership.")
        if sub.status not in {S.ACTIVE, S.PAST_DUE, S.TRIALING}:
            raise ChangeRefused(f"A {sub.status.replace('_', ' ')} membership cannot be paused.")
        sid = _stripe_sub(ctx, sub)
        behavior = parse.choice(raw.get("behavior") or PauseBehavior.VOID, [b.value for b in PauseBehavior],
                                "pause behaviour")
        resumes = raw.get("resumes_at")
        resumes_at = parse.future(resumes, "resume date", ctx.now) if resumes not in (None, "") else None
        before = mrr_of(ctx.session, sub, at=ctx.now)
        after = mrr_of(ctx.session, sub, pause_behavior=behavior, at=ctx.now)
        summary = [f"Stops charging the member ({behavior.replace('_', ' ')} invoices while paused).",
                   f"Collection resumes {'on ' + _date(resumes_at) if resumes_at else 'when an agent resumes it'}."]
        return Plan(params={"behavior": behavior, "resumes_at": resumes_at.isoformat() if resumes_at else None},
                    preview=Preview(self.name, summary, mrr_before_minor=before, mrr_after_minor=after,
                                    currency=sub.currency), stripe_ids={"subscription": sid})

    def target(self, plan: Plan) -> dict[str, Any]:
        pause: dict[str, Any] = {"behavior": plan.params["behavior"]}
        if plan.params.get("resumes_at"):
            pause["resumes_at"] = to_epoch(datetime.fromisoformat(plan.params["resumes_at"]))
        return {"pause_collection": pause}

    def matches(self, obj: dict[str, Any], plan: Plan) -> bool:
        return bool(((obj.get("pause_collection") or {}).get("behavior")) == plan.params["behavior"])


class Resume(_SubscriptionAction, name="resume", title="Resume payment collection",
             permission=Permission.CHANGE_MEMBERSHIP):
    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        sub = _sub(ctx)
        if sub.status == S.CANCELED:
            raise ChangeRefused("This membership is canceled; reactivate it instead.")
        if not sub.pause_behavior:
            raise ChangeRefused("Collection is not paused for this membership.")
        sid = _stripe_sub(ctx, sub)
        return Plan(params={}, stripe_ids={"subscription": sid}, preview=Preview(
            self.name, ["Charges the member again from the next invoice."], currency=sub.currency,
            mrr_before_minor=mrr_of(ctx.session, sub, at=ctx.now),
            mrr_after_minor=mrr_of(ctx.session, sub, pause_behavior=None, at=ctx.now)))

    def target(self, plan: Plan) -> dict[str, Any]:
        return {"pause_collection": ""}

    def matches(self, obj: dict[str, Any], plan: Plan) -> bool:
        return not obj.get("pause_collection")


class Cancel(_SubscriptionAction, name="cancel", title="Cancel the membership",
             permission=Permission.CHANGE_MEMBERSHIP):
    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        sub = _sub(ctx, if_ended="This membership is already canceled.")
        when = parse.choice(raw.get("when"), ["now", "period_end"], "when to cancel")
        if when == "period_end" and sub.cancel_at_period_end:
            raise ChangeRefused(f"This membership is already set to end on {_date(sub.current_period_end)}.")
        before = mrr_of(ctx.session, sub, at=ctx.now)
        params = {"when": when}
        if sub.complimentary:
            summary = ["Ends the complimentary membership now (no Stripe, no refund)."]
            return Plan(params={"when": "now"}, preview=Preview(self.name, summary, mrr_before_minor=0,
                                                                mrr_after_minor=0, new_period_end=ctx.now))
        sid = _stripe_sub(ctx, sub)
        end: datetime | None
        if when == "now":
            summary = ["Ends the membership immediately; no refund is made (refund a payment separately)."]
            after, end = 0, ctx.now
        else:
            summary = [f"The membership ends on {_date(sub.current_period_end)}; no further charges."]
            after, end = before, sub.current_period_end
        return Plan(params=params, stripe_ids={"subscription": sid}, preview=Preview(
            self.name, summary, mrr_before_minor=before, mrr_after_minor=after, new_period_end=end,
            currency=sub.currency))

    def needs_stripe(self, ctx: Ctx, plan: Plan) -> bool:
        return "subscription" in plan.stripe_ids

    def call_stripe(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any]:
        from core.stripe_gateway import writes

        if plan.params["when"] == "now":
            return {"subscription": writes.cancel_subscription(
                ctx.client, plan.stripe_ids["subscription"], comment=ctx.comment,
                feedback=FEEDBACK.get(ctx.reason), key=key)}
        return super().call_stripe(ctx, plan, key)

    def target(self, plan: Plan) -> dict[str, Any]:
        return {"cancel_at_period_end": True}

    def matches(self, obj: dict[str, Any], plan: Plan) -> bool:
        if plan.params["when"] == "now":
            return obj.get("status") == "canceled"
        return bool(obj.get("cancel_at_period_end"))

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        if stripe_result:
            return super().write(ctx, plan, stripe_result)
        sub = _sub(ctx)
        before = sub.status
        sub.status, sub.canceled_at, sub.ended_at, sub.current_period_end = S.CANCELED, ctx.now, ctx.now, ctx.now
        sub.cancel_at, sub.updated_at = ctx.now, ctx.now
        record_staff_change(ctx, sub, "canceled", from_status=before, from_tier_id=sub.tier_id, reason=ctx.reason)
        return {"status": sub.status}


class Uncancel(_SubscriptionAction, name="uncancel", title="Undo a scheduled cancellation",
               permission=Permission.CHANGE_MEMBERSHIP):
    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        sub = _sub(ctx, if_ended="This membership has already ended; reactivate it instead.")
        if not sub.cancel_at_period_end:
            raise ChangeRefused("This membership is not scheduled to end; there is nothing to undo.")
        sid = _stripe_sub(ctx, sub)
        mrr = mrr_of(ctx.session, sub, at=ctx.now)
        return Plan(params={}, stripe_ids={"subscription": sid}, preview=Preview(
            self.name, [f"The membership renews on {_date(sub.current_period_end)} as before."],
            mrr_before_minor=mrr, mrr_after_minor=mrr, new_period_end=sub.current_period_end, currency=sub.currency))

    def target(self, plan: Plan) -> dict[str, Any]:
        return {"cancel_at_period_end": False}

    def matches(self, obj: dict[str, Any], plan: Plan) -> bool:
        return not obj.get("cancel_at_period_end") and obj.get("status") != "canceled"


class Extend(_SubscriptionAction, name="extend", title="Add free days", permission=Permission.CHANGE_MEMBERSHIP):
    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        sub = _sub(ctx)
        days = allowed_days(ctx, raw.get("days"), "add", "for more")
        if sub.status in S.ended():
            raise ChangeRefused("This membership is canceled; reactivate it or grant a complimentary one.")
        base: datetime | None
        if sub.complimentary:
            base = sub.current_period_end or ctx.now
            new_end = base + timedelta(days=days)
            return Plan(params={"days": days, "new_end": new_end.isoformat()}, preview=Preview(
                self.name, [f"Adds {days} days to the complimentary membership (no Stripe)."],
                new_period_end=new_end, mrr_before_minor=0, mrr_after_minor=0))
        if sub.status not in {S.ACTIVE, S.TRIALING}:
            raise ChangeRefused(f"A {sub.status.replace('_', ' ')} membership cannot be extended; "
                                "settle its payment first.")
        if sub.pause_behavior:
            raise ChangeRefused("Collection is paused; resume it before adding free days.")
        sid = _stripe_sub(ctx, sub)
        base = sub.trial_end if sub.status == S.TRIALING and sub.trial_end else sub.current_period_end
        if base is None:
            raise ChangeRefused("This membership has no current period end to extend; sync it first.")
        if base <= ctx.now:
            # Stripe renews at the period's end: ours has not heard of the renewal yet.
            raise ChangeRefused(f"This membership's period ended on {_date(base)} and its renewal has not reached "
                                "Memberdesk yet; an admin can resync the member (Stripe sync page), then add the days.")
        new_end = base + timedelta(days=days)
        before = mrr_of(ctx.session, sub, at=ctx.now)
        what = "trial" if sub.status == S.TRIALING else "current period"
        summary = [f"Adds {days} free days: the {what} ends on {_date(new_end)} instead of {_date(base)}.",
                   "No charge now; the next charge moves to the new date."]
        if sub.status == S.ACTIVE:
            summary.append("Stripe shows the free days as a trial, so MRR counts zero until then.")
        return Plan(params={"days": days, "new_end": new_end.isoformat()}, stripe_ids={"subscription": sid},
                    preview=Preview(self.name, summary, new_period_end=new_end, mrr_before_minor=before,
                                    mrr_after_minor=mrr_of(ctx.session, sub, status=S.TRIALING, at=ctx.now),
                                    currency=sub.currency))

    def needs_stripe(self, ctx: Ctx, plan: Plan) -> bool:
        return "subscription" in plan.stripe_ids

    def target(self, plan: Plan) -> dict[str, Any]:
        return {"trial_end": to_epoch(datetime.fromisoformat(plan.params["new_end"])), "proration_behavior": "none"}

    def matches(self, obj: dict[str, Any], plan: Plan) -> bool:
        return from_epoch(obj.get("trial_end")) == datetime.fromisoformat(plan.params["new_end"])

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        if stripe_result:
            return super().write(ctx, plan, stripe_result)
        sub = _sub(ctx)
        end = datetime.fromisoformat(plan.params["new_end"])
        sub.current_period_end, sub.cancel_at, sub.updated_at = end, end, ctx.now
        record_staff_change(ctx, sub, "extended", from_status=sub.status, from_tier_id=sub.tier_id,
                            reason=ctx.reason)
        return {"ends_at": end.isoformat()}


class Reactivate(Action, name="reactivate", title="Reactivate a canceled member",
                 permission=Permission.CHANGE_MEMBERSHIP):
    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        sub = current_subscription(ctx.session, ctx.member.id)
        if sub is not None and sub.status not in S.ended():
            raise ChangeRefused("This member's membership is not canceled; there is nothing to reactivate.")
        customer = require_customer(ctx)
        price_raw = raw.get("price_id") or (sub.price_id if sub else None)
        if price_raw is None:
            raise ChangeRefused("Choose the price to reactivate the member on.")
        price = ctx.session.get(Price, parse.whole_number(price_raw, "price", low=1, high=2**62))
        if price is None or not price.stripe_price_id:
            raise ChangeRefused("This price is not in Stripe.")
        if not price.active:
            raise ChangeRefused("This price is no longer sold; choose a current one.")
        from core.stripe_gateway import GatewayError, writes

        try:
            inv = writes.preview_new_subscription(ctx.client, customer_id=customer, price_id=price.stripe_price_id)
            amount = int(inv.get("amount_due") or 0)
        except GatewayError as exc:
            raise ChangeRefused(exc.sentence) from None
        tmp = Subscription(status=S.ACTIVE, price_id=price.id, quantity=1, complimentary=False)
        after = mrr_of(ctx.session, tmp, status=S.ACTIVE, price=price, pause_behavior=None)
        summary = [f"Starts a new membership on {format_money(price.unit_amount, price.currency)} per "
                   f"{price.interval}, charging the default card now.",
                   "If the card is declined, nothing is created."]
        total = int(inv.get("total") or 0)
        if total > amount:
            # Stripe pays the first invoice from the member's credit balance first: say so beside
            # an amount charged that is smaller than the price.
            summary.insert(1, f"The member's credit balance pays {format_money(total - amount, price.currency)} of "
                              f"the first invoice; {format_money(amount, price.currency)} is charged now.")
        return Plan(params={"price_id": price.id}, stripe_ids={"customer": customer, "price": price.stripe_price_id},
                    preview=Preview(self.name, summary, amount_minor=amount, amount_kind="charge",
                                    currency=price.currency, mrr_before_minor=0, mrr_after_minor=after))

    def call_stripe(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any]:
        from core.stripe_gateway import writes

        return _with_invoice(ctx, writes.create_subscription(ctx.client, customer_id=plan.stripe_ids["customer"],
                                                             price_id=plan.stripe_ids["price"], key=key))

    def find_applied(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any] | None:
        from core.stripe_gateway import writes

        obj = writes.find_subscription(ctx.client, customer_id=plan.stripe_ids["customer"], key=key)
        return _with_invoice(ctx, obj) if obj else None

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        sub = _mirror(ctx, stripe_result)
        return {"status": sub.status if sub else None, "subscription_id": sub.id if sub else None}


