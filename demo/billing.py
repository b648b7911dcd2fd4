"""Invoices, payment attempts, refunds and disputes of one member's simulation.

A mixin of ``demo.simulate._Member``: it owns the money side (what an invoice costs, whether
a charge succeeds and with which decline code, refunds, disputes, the planted incidents) and
records the Stripe objects and events on the member's story.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from demo import objects as o
from demo.catalogue import (
    DECLINE_MESSAGES,
    DECLINES,
    DISPUTE_REASONS,
    OWN_FAILURE_CODES,
    REFUND_REASONS,
)

DAY = 86400
HOUR = 3600
FIRST_ATTEMPT_FAIL = 0.068
Obj = dict[str, Any]


def _pick(rng: random.Random, table: tuple[tuple[Any, float], ...]) -> Any:
    r = rng.random()
    for value, weight in table:
        r -= weight
        if r < 0:
            return value
    return table[-1][0]


def card_expires_at(pm: Obj) -> int:
    """The first second the card no longer works (the month after its expiry month)."""
    card = pm["card"]
    year, month = card["exp_year"], card["exp_month"]
    return int(datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC).timestamp())


def _fee(amount: int, currency: str) -> int:
    if currency == "JPY":
        return round(amount * 0.036)
    return round(amount * 0.029) + 30


class Billing:
    """Money-side methods; the host class provides the member state (rng, story, sub, pm, ...)."""

    rng: random.Random
    world: Any
    story: Any
    now: int
    pis: dict[str, Obj]
    sub: Obj
    price: Obj
    pm: Obj
    pm_expires_at: int  # card_expires_at(pm)
    # Set or defined by demo.simulate._Member, which this class is mixed into.
    invoice_no: int
    customer_id: str
    number_prefix: str
    currency: str
    item_id: str
    risk: float

    if TYPE_CHECKING:
        def id(self, prefix: str) -> str: ...

        def event(self, ts: int, kind: str, obj: Obj, previous: Obj | None = None) -> None: ...

    def invoice(self, ts: int, reason: str, start: int, end: int, amount: int | None = None) -> Obj:
        self.invoice_no += 1
        unit = self.price["unit_amount"]
        subtotal = unit if amount is None else amount
        total = subtotal
        if self.sub["discounts"] and subtotal:
            total = subtotal - round(subtotal * 0.20)
        inv = o.invoice(self.id("in"), customer_id=self.customer_id, sid=self.sub["id"],
                        number=f"{self.number_prefix}-{self.invoice_no:04d}", created=ts, billing_reason=reason,
                        currency=self.currency, subtotal=subtotal, total=total, line_id=self.id("il"),
                        price=self.price, item_id=self.item_id, quantity=1, period_start=start, period_end=end,
                        description=f"1 × {self.price['nickname']}")
        inv["status"] = "open"
        inv["status_transitions"]["finalized_at"] = ts
        self.story.invoices.append(inv)
        self.last_invoice = inv["id"]
        self.event(ts, "invoice.created", inv)
        self.event(ts, "invoice.finalized", inv)
        if total == 0:
            self.settle(inv, ts)
        return inv

    def attempt(self, inv: Obj, ts: int, *, renewal: bool = False, retry: bool = False,
                first_payment: bool = False) -> str | bool:
        """One charge on the invoice's payment intent: True when it succeeded, else the decline code."""
        rng, pm = self.rng, self.pm
        code: str | None = None
        spike = self.world.spike_at
        if ts >= self.pm_expires_at:
            code = "expired_card"
        elif (renewal and not retry and pm["card"]["brand"] == "mastercard"
              and spike <= ts < spike + DAY and rng.random() < 0.6):
            code = "insufficient_funds"  # the planted decline spike
        else:
            p_fail = 0.03 if first_payment else FIRST_ATTEMPT_FAIL * self.risk
            if retry:
                p_fail = 0.72
            if rng.random() < p_fail:
                code = _pick(rng, DECLINES)
        if not inv["payments"]["data"]:
            pi = o.payment_intent(self.id("pi"), customer_id=self.customer_id, amount=inv["total"],
                                  currency=self.currency, created=ts, pm=pm["id"])
            self.story.payment_intents.append(pi)
            inv["payments"]["data"].append({"id": self.id("inpay"), "object": "invoice_payment", "amount_paid": None,
                                            "amount_requested": inv["total"], "currency": pi["currency"],
                                            "invoice": inv["id"], "is_default": True, "status": "open",
                                            "created": ts, "livemode": False,
                                            "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
                                            "status_transitions": {"paid_at": None, "canceled_at": None}})
            self.pis[inv["id"]] = pi
        pi = self.pis[inv["id"]]
        pi["payment_method"] = pm["id"]
        ok = code is None
        failure = None if ok else (code if code in OWN_FAILURE_CODES else "card_declined")
        ch = o.charge(self.id("ch"), pi=pi, created=ts, pm=pm, status="succeeded" if ok else "failed",
                      code=code, failure_code=failure,
                      message=None if ok else DECLINE_MESSAGES.get(code or "", "Your card was declined."),
                      fee=_fee(pi["amount"], self.currency) if ok else None)
        self.story.charges.append(ch)
        pi["latest_charge"] = ch["id"]
        inv["attempt_count"] += 1
        inv["attempted"] = True
        if ok:
            pi["status"], pi["amount_received"], pi["last_payment_error"] = "succeeded", pi["amount"], None
            self.event(ts, "charge.succeeded", ch)
            self.event(ts, "payment_intent.succeeded", pi)
            self.after_success(ch, ts)
            return True
        pi["status"] = "requires_payment_method"
        pi["last_payment_error"] = {"type": "card_error", "code": failure, "decline_code": code,
                                    "message": ch["failure_message"], "charge": ch["id"]}
        self.event(ts, "charge.failed", ch)
        self.event(ts, "payment_intent.payment_failed", pi)
        self.event(ts, "invoice.payment_failed", inv)
        assert code is not None  # not ok: a decline code
        return code

    def settle(self, inv: Obj, ts: int) -> None:
        inv["status"] = "paid"
        inv["amount_paid"], inv["amount_remaining"] = inv["total"], 0
        inv["next_payment_attempt"] = None
        inv["status_transitions"] = dict(inv["status_transitions"], paid_at=ts)
        for entry in inv["payments"]["data"]:
            entry["status"], entry["amount_paid"] = "paid", inv["total"]
            entry["status_transitions"] = {"paid_at": ts, "canceled_at": None}
        self.event(ts, "invoice.paid", inv)

    def void(self, inv: Obj, ts: int) -> None:
        inv["status"] = "void"
        inv["next_payment_attempt"] = None
        inv["status_transitions"] = dict(inv["status_transitions"], voided_at=ts)
        pi = self.pis.get(inv["id"])
        if pi is not None:
            pi["status"] = "canceled"
        self.event(ts, "invoice.voided", inv)

    def after_success(self, ch: Obj, ts: int) -> None:
        rng, world = self.rng, self.world
        amount = ch["amount"]
        refund_at, refund_amount, reason = None, 0, ""
        burst = world.burst_at
        if rng.random() < 0.012:
            refund_at = ts + int(rng.uniform(0.5, 20) * DAY)
            full = rng.random() < 0.65
            refund_amount = amount if full else max(1, round(amount * rng.uniform(0.2, 0.7)))
            reason = _pick(rng, REFUND_REASONS)
        elif burst - 30 * DAY <= ts < burst and rng.random() < 0.02:  # charged in the 30 days before the burst
            refund_at, refund_amount, reason = burst + rng.randrange(9 * HOUR, 20 * HOUR), amount, "duplicate"
        if refund_at is not None and refund_at < self.now:
            re = o.refund(self.id("re"), ch=ch, amount=refund_amount, created=refund_at, reason=reason)
            self.story.refunds.append(re)
            ch["amount_refunded"] = refund_amount
            ch["refunded"] = refund_amount == amount
            self.event(refund_at, "charge.refunded", ch)
            self.event(refund_at, "refund.created", re)
            return
        if rng.random() < 0.0025:
            opened = ts + int(rng.uniform(3, 40) * DAY)
            if opened >= self.now:
                return
            closes = opened + int(rng.uniform(20, 70) * DAY)
            if closes <= self.now:
                status = "won" if rng.random() < 0.4 else "lost"
            else:
                status = "needs_response" if self.now - opened < 7 * DAY else "under_review"
            dp = o.dispute(self.id("dp"), ch=ch, created=opened, reason=_pick(rng, DISPUTE_REASONS), status=status,
                           closed=closes if status in ("won", "lost") else None)
            self.story.disputes.append(dp)
            ch["disputed"] = True
            # The opening event carries the dispute as it was then, as Stripe's does; the closing one, as closed.
            self.event(opened, "charge.dispute.created",
                       dict(dp, status="needs_response", balance_transactions=dp["balance_transactions"][:1])
                       if status in ("won", "lost") else dp)
            if status in ("won", "lost"):
                self.story.dispute_closed[dp["id"]] = closes
                self.event(closes, "charge.dispute.closed", dp)
