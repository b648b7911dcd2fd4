"""Actions that live in our database only: a staff note, contact details, a complimentary grant.

Contact details of a member with a Stripe customer are written to Stripe first as well, so the
next sync agrees with what we wrote.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from core.changes import parse
from core.changes.actions.base import Action, Ctx, Plan, allowed_days, record_staff_change, require_customer
from core.changes.errors import ChangeRefused
from core.changes.model import Preview
from core.changes.state import current_subscription
from core.models import Member, StaffNote, Subscription, Tier
from core.models.enums import SubscriptionStatus
from core.permissions import Permission

ADDRESS_FIELDS = ("line1", "line2", "city", "postal_code", "state", "country")


class AddNote(Action, name="add_note", title="Add a staff note", permission=Permission.ADD_NOTE):
    uses_stripe = False
    sensitive = True  # the comment is the note's body

    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        # The note's text is the comment the agent writes; nothing else to validate.
        return Plan(params={}, preview=Preview(self.name, ["Adds a staff note visible to every agent."]))

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        note = StaffNote(member_id=ctx.member.id, author=ctx.actor.username, body=ctx.comment, created_at=ctx.now)
        ctx.session.add(note)
        ctx.session.flush()
        return {"note_id": note.id}


def _address(raw: Any) -> dict[str, str] | None:
    if raw in (None, "", {}):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ChangeRefused("The address could not be read; fill in its fields.") from None
    if not isinstance(raw, dict):
        raise ChangeRefused("The address could not be read; fill in its fields.")
    unknown = set(raw) - set(ADDRESS_FIELDS)
    if unknown:
        raise ChangeRefused("The address has fields we do not keep.")
    address = {k: parse.text(raw.get(k), f"address {k.replace('_', ' ')}", required=False, max_len=200)
               for k in ADDRESS_FIELDS}
    address = {k: v for k, v in address.items() if v}
    if not address:
        return None
    if "country" in address:
        country = address["country"].upper()
        if len(country) != 2 or not country.isalpha():
            raise ChangeRefused("The address country is a two-letter code such as US or DE.")
        address["country"] = country
    # A first line alone went to Stripe as the member's whole address (the country stayed the old one).
    missing = [words for field, words in (("line1", "its first line"), ("city", "a city"),
                                          ("country", "a country (two letters)")) if field not in address]
    if missing:
        raise ChangeRefused(f"An address needs {', '.join(missing[:-1]) + ' and ' if len(missing) > 1 else ''}"
                            f"{missing[-1]}.")
    return address


class EditContact(Action, name="edit_contact", title="Edit contact details", permission=Permission.CHANGE_MEMBERSHIP):
    sensitive = True

    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        m = ctx.member
        new: dict[str, Any] = {}
        if "email" in raw:
            new["email"] = parse.email(raw["email"])
        if "name" in raw:
            new["name"] = parse.text(raw["name"], "name", max_len=256)  # Stripe's maximum
        if "phone" in raw:
            new["phone"] = parse.phone(raw["phone"])
        if "address" in raw:
            new["address"] = _address(raw["address"])
        current = {"email": m.email, "name": m.name, "phone": m.phone,
                   "address": json.loads(m.address) if m.address else None}
        changed = {k: v for k, v in new.items() if v != current[k]}
        if not changed:
            raise ChangeRefused("Nothing to change: the details you entered are the ones we have.")
        if "email" in changed:
            taken = ctx.session.scalar(select(func.count()).select_from(Member).where(
                Member.email == changed["email"], Member.id != m.id))
            if taken:
                raise ChangeRefused(f"Another member already uses {changed['email']}.")
        if self.needs_stripe(ctx, Plan(changed, Preview(self.name, []))):
            require_customer(ctx)
        summary = [f"{k.title()}: changed" for k in changed]  # values stay out of previews and logs
        return Plan(params=changed, preview=Preview(self.name, summary))

    def needs_stripe(self, ctx: Ctx, plan: Plan) -> bool:
        return bool(ctx.member.stripe_customer_id) and ctx.member.deleted_in_stripe_at is None

    def call_stripe(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any]:
        from core.stripe_gateway import writes

        customer = writes.update_customer(ctx.client, ctx.member.stripe_customer_id or "", plan.params, key=key)
        return {"customer": customer}

    def find_applied(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any] | None:
        from core.stripe_gateway import writes

        customer = writes.retrieve_customer(ctx.client, ctx.member.stripe_customer_id or "")
        return {"customer": customer} if writes.customer_matches(customer, plan.params) else None

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        m = ctx.member
        for k, v in plan.params.items():
            setattr(m, k, json.dumps(v, sort_keys=True) if k == "address" and v is not None else v)
        m.updated_at = ctx.now
        return {"changed": sorted(plan.params)}


class GrantComp(Action, name="grant_comp", title="Grant a complimentary membership",
                permission=Permission.CHANGE_MEMBERSHIP):
    uses_stripe = False

    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        days = allowed_days(ctx, raw.get("days"), "grant", "for a longer grant")
        tiers = {t.code: t for t in ctx.session.scalars(select(Tier).where(Tier.code != "free"))}
        tier_code = parse.choice(raw.get("tier"), sorted(tiers), "tier")
        sub = current_subscription(ctx.session, ctx.member.id)
        if sub is not None and sub.status in SubscriptionStatus.live() and not sub.complimentary:
            raise ChangeRefused("This member already has a paid membership; extend it instead of granting one.")
        if sub is not None and sub.complimentary and sub.status in SubscriptionStatus.live():
            raise ChangeRefused("This member already has a complimentary membership; extend it instead.")
        end = ctx.now + timedelta(days=days)
        preview = Preview(self.name, [f"Grants {tiers[tier_code].name} free for {days} days, without Stripe.",
                                      "No charge; it ends by itself."],
                          new_period_end=end, mrr_before_minor=0, mrr_after_minor=0)
        return Plan(params={"days": days, "tier": tier_code}, preview=preview)

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        tier = ctx.session.scalar(select(Tier).where(Tier.code == plan.params["tier"]))
        assert tier is not None
        end = ctx.now + timedelta(days=plan.params["days"])
        previous = current_subscription(ctx.session, ctx.member.id)
        sub = Subscription(member_id=ctx.member.id, stripe_subscription_id=None, status=SubscriptionStatus.ACTIVE,
                           tier_id=tier.id, price_id=None, currency=previous.currency if previous else "USD",
                           quantity=1, mrr_minor=0, complimentary=True, created_at=ctx.now, started_at=ctx.now,
                           current_period_start=ctx.now, current_period_end=end, cancel_at_period_end=True,
                           cancel_at=end, updated_at=ctx.now)
        ctx.session.add(sub)
        ctx.session.flush()
        record_staff_change(ctx, sub, "comp_granted", from_status=None, from_tier_id=None, reason=None)
        return {"subscription_id": sub.id, "tier": tier.code, "ends_at": end.isoformat()}
