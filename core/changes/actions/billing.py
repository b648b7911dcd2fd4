"""Refund a payment (fully or partly) and retry a failed invoice now.

The refundable rest comes from Stripe (the charge's ``amount_refunded``) when Stripe can be
asked, so a refund made in Stripe's dashboard a minute ago is counted. The charge is read once per
refund, by the plan: the refund itself (and the search for it after a lost answer) comes back with
the charge expanded, which is what the mirror records.

A refund's limit and its approval threshold compare what it adds up to, not the refund alone:
the payment's refunds so far plus this one, or the member's refunds in the payment's currency
within the limits' window plus this one, whichever is larger. Splitting a refund into pieces
therefore reaches the same limit and the same approval as making it at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from core.changes import created, mirror, parse, repeats
from core.changes.actions.base import Action, Ctx, Plan, require_customer
from core.changes.errors import LIMIT, ChangeRefused
from core.changes.limits import Approval, approval_for
from core.changes.model import Preview
from core.models import ChangeRequest, Invoice, Payment, Refund
from core.models.enums import InvoiceStatus, PaymentStatus
from core.money import format_money
from core.permissions import Permission


def _payment(ctx: Ctx, raw: Any) -> Payment:
    if raw in (None, ""):
        raise ChangeRefused("Choose the payment to refund.")
    pid = parse.whole_number(raw, "payment", low=1, high=2**62)
    payment = ctx.session.get(Payment, pid)
    if payment is None or payment.member_id != ctx.member.id:
        raise ChangeRefused("This payment does not belong to this member.")
    return payment


class RefundPayment(Action, name="refund", title="Refund a payment", permission=Permission.REFUND):
    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        payment = _payment(ctx, raw.get("payment_id"))
        if payment.status == PaymentStatus.FAILED:
            raise ChangeRefused("This payment failed, so there is nothing to refund.")
        if payment.status != PaymentStatus.SUCCEEDED:
            raise ChangeRefused("This payment has not succeeded yet, so it cannot be refunded.")
        if payment.disputed:
            raise ChangeRefused("This payment is disputed; the dispute decides the money, so it cannot be refunded.")
        if not payment.stripe_charge_id:
            raise ChangeRefused("This payment has no Stripe charge to refund.")
        if "currency" in raw and raw["currency"] not in (None, ""):
            # Only a check that the request is about this payment: the payment's own currency is
            # accepted even when we do not sell in it (a refund in CAD planned again at approval).
            currency = str(raw["currency"]).strip().upper()
            if currency != payment.currency:
                raise ChangeRefused(f"This payment was made in {payment.currency}, not {currency}.")
        require_customer(ctx)
        refunded = payment.amount_refunded
        if ctx.stripe is not None:
            from core.stripe_gateway import GatewayError, writes

            try:
                charge = writes.retrieve_charge(ctx.stripe, payment.stripe_charge_id)
            except GatewayError as exc:
                raise ChangeRefused(exc.sentence) from None
            refunded = int(charge.get("amount_refunded") or 0)
            if charge.get("disputed"):
                raise ChangeRefused("This payment is disputed in Stripe, so it cannot be refunded.")
        waiting = _waiting(ctx, payment.currency)
        asked = sum(amount for pid, amount in waiting if pid == payment.id)
        remaining = payment.amount - refunded - asked
        if remaining <= 0:
            if asked:
                raise ChangeRefused(f"The rest of this payment ({format_money(asked, payment.currency)}) is already "
                                    "asked for in refunds waiting for approval.")
            raise ChangeRefused("This payment is already fully refunded.")
        if parse.flag(raw.get("full")):
            amount = remaining
        else:
            amount = parse.amount(raw.get("amount"), payment.currency, "refund amount")
        if amount > remaining:
            raise ChangeRefused(f"At most {format_money(remaining, payment.currency)} of this payment can still be "
                                f"refunded{' (the rest waits for approval)' if asked else ''}; "
                                f"{format_money(amount, payment.currency)} is too much.")
        counted, earlier, why = _counted(ctx, payment, refunded + asked, amount,
                                         sum(amount for _, amount in waiting))
        def money(v: int) -> str:
            return format_money(v, payment.currency)

        cap = ctx.limits.max_refund(ctx.actor.roles, payment.currency)
        if cap is not None and counted > cap:
            if earlier:
                raise ChangeRefused(
                    f"Your role may refund at most {money(cap)} per payment and per member in "
                    f"{ctx.limits.refund_window_hours} hours; {money(earlier)} was already {why}, so "
                    f"{money(max(cap - earlier, 0))} more at most. A manager or finance must make larger refunds.",
                    code=LIMIT)
            raise ChangeRefused(f"Your role may refund at most {money(cap)} at once; "
                                "a manager or finance must make larger refunds.", code=LIMIT)
        # After the limits: a refund the role may not make is refused outright, not asked about.
        repeat_of = raw.get("repeat_of")
        repeats.check_refund(ctx.session, member_id=ctx.member.id, payment_id=payment.id, amount=amount,
                             now=ctx.now, confirmed=repeat_of, exclude=ctx.request_id)
        approval = approval_for(ctx.session, ctx.limits, counted, payment.currency, ctx.now)
        full = amount == remaining
        preview = Preview(
            self.name,
            [f"Refunds {format_money(amount, payment.currency)} of the {format_money(payment.amount, payment.currency)}"
             f" payment{' (everything left)' if full else ''} to the member's card.",
             "The membership itself does not change."],
            amount_minor=amount, amount_kind="refund", currency=payment.currency,
            mrr_before_minor=None, mrr_after_minor=None, needs_approval=approval.needs,
            approval_reason=(_approval_reason(approval, payment.currency, counted, earlier, why)
                             if approval.needs else None))
        params = {"payment_id": payment.id, "amount": amount, "currency": payment.currency}
        if repeat_of not in (None, ""):
            params["repeat_of"] = parse.whole_number(repeat_of, "earlier request", low=1, high=2**62)
        return Plan(params=params,
                    preview=preview, stripe_ids={"charge": payment.stripe_charge_id})

    def _charge(self, ctx: Ctx, plan: Plan) -> str:
        payment = ctx.session.get(Payment, plan.params["payment_id"])
        assert payment is not None and payment.stripe_charge_id
        return payment.stripe_charge_id

    def call_stripe(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any]:
        from core.stripe_gateway import writes

        refund = writes.refund(ctx.stripe, charge_id=self._charge(ctx, plan), amount=plan.params["amount"],
                               reason=ctx.reason, key=key)
        return _refund_and_charge(refund)

    def find_applied(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any] | None:
        from core.stripe_gateway import writes

        refund = writes.find_refund(ctx.stripe, charge_id=self._charge(ctx, plan), key=key)
        return None if refund is None else _refund_and_charge(refund)

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        payment = ctx.session.get(Payment, plan.params["payment_id"])
        assert payment is not None
        mirror.apply(ctx.session, stripe_result["charge"], state_at=ctx.now)
        mirror.apply(ctx.session, stripe_result["refund"], state_at=ctx.now)
        ctx.session.refresh(payment)
        refund = stripe_result["refund"]
        return {"stripe_refund_id": refund["id"], "amount": refund["amount"],
                "currency": str(refund["currency"]).upper(), "payment_amount_refunded": payment.amount_refunded}


def _refund_and_charge(refund: dict[str, Any]) -> dict[str, Any]:
    """The refund and its charge as Stripe answered them after the refund (the gateway expands the
    charge on the refund itself, so the charge is not asked for again)."""
    charge = refund["charge"]
    return {"refund": refund | {"charge": charge["id"]}, "charge": charge}


def _waiting(ctx: Ctx, currency: str) -> list[tuple[int, int]]:
    """(payment id, amount) of this member's refunds in ``currency`` waiting for approval, the one
    being decided excepted. They count like refunds made: three requests of $99.99 each waited
    below a $250 limit, each preview saying only what was refunded, and two approvals paid out
    more than the limit allowed the person who asked."""
    from core.changes.service import PENDING

    rows = ctx.session.execute(select(ChangeRequest.id, ChangeRequest.params).where(
        ChangeRequest.member_id == ctx.member.id, ChangeRequest.action == "refund",
        ChangeRequest.status == PENDING)).all()
    return [(int(params["payment_id"]), int(params["amount"])) for rid, params in rows
            if rid != ctx.request_id and isinstance(params, dict) and params.get("currency") == currency
            and params.get("payment_id") is not None and params.get("amount") is not None]


def _counted(ctx: Ctx, payment: Payment, refunded_on_payment: int, amount: int,
             waiting: int = 0) -> tuple[int, int, str]:
    """(what the limits compare, what was refunded or asked for before this, where) for a refund of
    ``amount``; ``refunded_on_payment`` and ``waiting`` include the refunds waiting for approval."""
    since = ctx.now - timedelta(hours=ctx.limits.refund_window_hours)
    member_recent = ctx.session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.member_id == ctx.member.id, Refund.currency == payment.currency,
            Refund.status.in_(("succeeded", "pending")), Refund.created_at > since)
    ) or 0
    member_recent = int(member_recent) + waiting
    done = "refunded or waiting for approval" if waiting else "refunded"
    if refunded_on_payment >= member_recent:
        return refunded_on_payment + amount, refunded_on_payment, f"{done} on this payment"
    return (member_recent + amount, member_recent,
            f"{done} to this member in the last {ctx.limits.refund_window_hours} hours")


def _approval_reason(approval: Approval, currency: str, counted: int, earlier: int, why: str) -> str:
    """Why the refund waits, in the preview's words: the amount it passed and, for a currency without
    an amount of its own, what it came to in the reporting currency (or that it cannot be compared)."""
    def money(v: int) -> str:
        return format_money(v, currency)

    if approval.threshold is None:
        return (f"{currency} has no approval amount of its own and no exchange rate to compare it with the "
                f"{approval.currency} one, so every {currency} refund needs a second person")
    limit = format_money(approval.threshold, approval.currency)
    made = f"with the {money(earlier)} already {why} this makes {money(counted)}" if earlier else ""
    if approval.converted is None:
        return f"refunds above {limit} need a second person" + (f"; {made}" if made else "")
    assert approval.rate_month is not None  # set whenever the amount was converted
    converted = (f"about {format_money(approval.converted, approval.currency)} at our "
                 f"{approval.rate_month:%B %Y} exchange rate")
    return (f"refunds above {limit} need a second person, in {currency} too; "
            + (f"{made}, {converted}" if made else f"this one is {converted}"))


class RetryInvoice(Action, name="retry_invoice", title="Retry a failed invoice now",
                   permission=Permission.CHANGE_MEMBERSHIP):
    def plan(self, ctx: Ctx, raw: dict[str, Any]) -> Plan:
        if raw.get("invoice_id") in (None, ""):
            raise ChangeRefused("Choose the open invoice to charge again.")
        iid = parse.whole_number(raw.get("invoice_id"), "invoice", low=1, high=2**62)
        inv = ctx.session.get(Invoice, iid)
        if inv is None or inv.member_id != ctx.member.id:
            raise ChangeRefused("This invoice does not belong to this member.")
        if inv.status == InvoiceStatus.PAID:
            raise ChangeRefused("This invoice is already paid; there is nothing to retry.")
        if inv.status != InvoiceStatus.OPEN:
            raise ChangeRefused(f"This invoice is {inv.status}; only an open invoice can be charged again.")
        if not inv.stripe_invoice_id:
            raise ChangeRefused("This invoice is not in Stripe, so Stripe cannot charge it.")
        require_customer(ctx)
        preview = Preview(self.name, [f"Charges the member's default card {format_money(inv.amount_remaining, inv.currency)}"
                                      " now for this invoice.", "If the card is declined, nothing changes here."],
                          amount_minor=inv.amount_remaining, amount_kind="charge", currency=inv.currency)
        return Plan(params={"invoice_id": inv.id}, preview=preview, stripe_ids={"invoice": inv.stripe_invoice_id})

    def _stripe_invoice(self, ctx: Ctx, plan: Plan) -> str:
        inv = ctx.session.get(Invoice, plan.params["invoice_id"])
        assert inv is not None and inv.stripe_invoice_id
        return inv.stripe_invoice_id

    def call_stripe(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any]:
        from core.stripe_gateway import writes

        return self._with_subscription(ctx, writes.pay_invoice(ctx.stripe, self._stripe_invoice(ctx, plan), key=key))

    def _with_subscription(self, ctx: Ctx, inv: dict[str, Any]) -> dict[str, Any]:
        """Paying an invoice can move its subscription (past_due -> active): bring that along, and
        the charge the payment made (``created``: its webhook then finds it stored)."""
        from core.stripe_gateway import writes
        from core.stripe_mapping import invoice_subscription_id

        out: dict[str, Any] = {}
        sub_id = invoice_subscription_id(inv)
        if sub_id:
            out["subscription"] = writes.retrieve_subscription(ctx.client, sub_id)
        return created.with_invoice(ctx.session, ctx.client, out, inv) | {"invoice": inv}

    def find_applied(self, ctx: Ctx, plan: Plan, key: str) -> dict[str, Any] | None:
        from core.stripe_gateway import writes

        inv = writes.retrieve_invoice(ctx.stripe, self._stripe_invoice(ctx, plan))
        return self._with_subscription(ctx, inv) if inv.get("status") == "paid" else None

    def write(self, ctx: Ctx, plan: Plan, stripe_result: dict[str, Any]) -> dict[str, Any]:
        if "subscription" in stripe_result:
            mirror.subscription(ctx.session, stripe_result["subscription"], state_at=ctx.now,
                                actor=ctx.actor.username, reason=ctx.reason)
        if "charges" in stripe_result:
            created.store(ctx.session, stripe_result, now=ctx.now)
        else:  # our rows held it as it is
            mirror.apply(ctx.session, stripe_result["invoice"], state_at=ctx.now)
        inv = ctx.session.get(Invoice, plan.params["invoice_id"])
        assert inv is not None
        ctx.session.refresh(inv)
        return {"invoice_status": inv.status, "amount_paid": inv.amount_paid, "currency": inv.currency}
