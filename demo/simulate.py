"""One member's three years, drawn from that member's own random stream.

``simulate_member(world, index)`` returns a ``Story``: the Stripe objects this member leaves
behind (final states, today's API shape), the history of each subscription's states (for the
membership changes and the ``customer.subscription.*`` events), and the other events. A free
member (about a third) is only an app user: Stripe never sees them.

Rules of the business (rates are per member and drawn, so members differ):
- trials of 14 days on about a third of first subscriptions; about 30% are canceled;
- renewals are attempted about an hour after the period ends; a first attempt fails for about
  6.8% of renewals times the member's risk, or because the card expired and was not replaced;
- a failed renewal is retried on days 3, 7 and 14 (4 tries), never automatically after a hard
  decline; a member may add a new card, which is charged at once; after the last try the
  subscription is canceled with ``cancellation_details.reason = payment_failed``;
- voluntary cancellation at period end with Stripe's feedback reasons; some are undone;
- upgrades/downgrades (no proration), rare collection pauses, some come back later;
- refunds (full and partial) and disputes (won, lost, open) on successful charges;
- the planted incidents of ``demo.world.incidents``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.timeutil import add_months
from demo import objects as o
from demo.billing import DAY, HOUR, Billing, Obj, _pick, card_expires_at
from demo.catalogue import (
    BRANDS,
    CALLING_CODES,
    CANCEL_FEEDBACK,
    CITIES,
    COMMENTS,
    COUNTRIES,
    CURRENCY_MIX,
    FIRST_NAMES,
    FUNDING,
    HARD_DECLINES,
    LAST_NAMES,
    RETRY_DAYS,
    WALLETS,
    price_id,
)
from demo.world import World


@dataclass(slots=True)
class SubState:
    at: int  # epoch seconds
    event_id: str
    event_type: str
    obj: Obj  # the subscription as it was from ``at`` on (shallow copy; nested values are never mutated)
    previous: Obj  # Stripe's data.previous_attributes
    relevant: bool  # False for a plain renewal (period moved, nothing else)


@dataclass(slots=True)
class Story:
    index: int
    member: Obj | None = None  # a free member's row (our columns); None when Stripe knows them
    customer: Obj | None = None
    payment_methods: list[Obj] = field(default_factory=list)
    subscriptions: list[list[SubState]] = field(default_factory=list)
    invoices: list[Obj] = field(default_factory=list)
    payment_intents: list[Obj] = field(default_factory=list)
    charges: list[Obj] = field(default_factory=list)
    refunds: list[Obj] = field(default_factory=list)
    disputes: list[Obj] = field(default_factory=list)
    dispute_closed: dict[str, int] = field(default_factory=dict)  # dispute id -> when it was won/lost
    # (epoch, event id, type, object, previous_attributes) for everything but subscriptions
    events: list[tuple[int, str, str, Obj, Obj | None]] = field(default_factory=list)


def _ascii(text: str) -> str:
    """A name as an address part: accents folded, not dropped (``Fernández`` -> ``fernandez``)."""
    folded = unicodedata.normalize("NFKD", text.lower().replace(" ", ""))
    return "".join(ch for ch in folded if not unicodedata.combining(ch)).encode("ascii", "ignore").decode()


def _add_interval(ts: int, interval: str) -> int:
    moment = datetime.fromtimestamp(ts, UTC)
    return int(add_months(moment, 12 if interval == "year" else 1).timestamp())


class _Member(Billing):
    """The mutable state of one member's simulation."""

    def __init__(self, world: World, index: int, events: bool = True):
        self.world = world
        self.events = events
        self.rng = world.rng(index)
        self.now = int(world.now.timestamp())
        self.base = f"demo{index:08d}"
        self.n = 0
        self.story = Story(index)
        self.invoice_no = 0
        self.pis: dict[str, Obj] = {}

    def id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.base}{self.n:04d}"

    def event(self, ts: int, kind: str, obj: Obj, previous: Obj | None = None) -> None:
        if not self.events:
            self.n += 1  # the id it would have had: later ids do not depend on ``events``
            return
        self.story.events.append((ts, self.id("evt"), kind, obj, previous))

    # ------------------------------------------------------------ people and cards

    def person(self) -> None:
        rng = self.rng
        self.signup = int(self.world.signup_at(rng).timestamp())
        self.currency = _pick(rng, CURRENCY_MIX)
        self.country = _pick(rng, COUNTRIES[self.currency])
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        self.name = f"{first} {last}"
        self.email = f"{_ascii(first)}.{_ascii(last)}.{self.story.index}@example.com"
        self.risk = rng.lognormvariate(0, 0.6) / 1.2
        self.churniness = rng.uniform(0.4, 1.6)

    def new_card(self, ts: int) -> Obj:
        rng = self.rng
        brands = BRANDS["JP"] if self.country == "JP" else BRANDS["default"]
        brand = _pick(rng, brands)
        if brand == "discover" and self.country != "US":
            brand = "visa"
        moment = datetime.fromtimestamp(ts, UTC)
        exp = add_months(moment, rng.randint(8, 60))
        pm = o.payment_method(
            self.id("pm"), customer_id=self.customer_id, created=ts, name=self.name, email=self.email,
            country=self.country, postal_code=f"{rng.randint(10000, 99999)}", brand=brand,
            last4=f"{rng.randint(0, 9999):04d}", exp_month=exp.month, exp_year=exp.year,
            card_country=self.country if rng.random() < 0.95 else rng.choice(("US", "GB", "DE", "FR")),
            funding=_pick(rng, FUNDING), wallet=_pick(rng, WALLETS))
        self.story.payment_methods.append(pm)
        self.event(ts, "payment_method.attached", pm)
        self.pm, self.pm_expires_at = pm, card_expires_at(pm)
        if self.story.customer is not None:
            self.story.customer["invoice_settings"]["default_payment_method"] = pm["id"]
            self.event(ts, "customer.updated", self.story.customer)
        return pm

    # ------------------------------------------------------------ the life

    def live(self) -> Story:
        rng = self.rng
        self.person()
        delay = 0 if rng.random() < 0.55 else int(rng.expovariate(1 / (60 * DAY)))
        start = self.signup + delay
        if rng.random() >= self.world.profile.paying_share or start >= self.now - HOUR:
            self.story.member = {"email": self.email, "name": self.name, "country": self.country,
                                 "created_at": datetime.fromtimestamp(self.signup, UTC)}
            return self.story
        self.customer_id = self.id("cus")
        self.number_prefix = f"D{self.story.index:07d}"
        city = CITIES[self.country]
        address = {"line1": f"{rng.randint(1, 240)} {rng.choice(LAST_NAMES)} Street", "line2": None,
                   "city": city, "postal_code": f"{rng.randint(10000, 99999)}", "state": None,
                   "country": self.country}
        phone = None
        if rng.random() < 0.5:
            rng.randint(1, 81)  # was a random calling code; still drawn so a seed's world stays the same
            phone = f"+{CALLING_CODES[self.country]} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}"
        cust = o.customer(self.customer_id, created=self.signup, email=self.email, name=self.name, phone=phone,
                          address=address, currency=self.currency, default_pm=None,
                          invoice_prefix=self.number_prefix)
        self.story.customer = cust
        self.event(self.signup, "customer.created", cust)
        self.new_card(max(start - 120, self.signup))
        t, first = start, True
        for _ in range(3):
            ended = self.subscription(t, trial_allowed=first)
            first = False
            if ended is None or rng.random() >= 0.12:
                break
            t = ended + int(rng.uniform(30, 200) * DAY)
            if t >= self.now:
                break
            if t >= self.pm_expires_at or rng.random() < 0.5:
                self.new_card(t - 60)
        # The customer as Stripe holds it now: its next invoice continues this story's numbers.
        cust["next_invoice_sequence"] = self.invoice_no + 1
        return self.story

    def subscription(self, t: int, *, trial_allowed: bool) -> int | None:
        """Run one subscription from ``t``; return when it ended, or None if it is still live."""
        ended = self._subscription(t, trial_allowed=trial_allowed)
        last = self.states[-1]
        if self.last_invoice is not None:
            last.obj = {**last.obj, "latest_invoice": self.last_invoice}
        return ended

    def _subscription(self, t: int, *, trial_allowed: bool) -> int | None:
        rng = self.rng
        tier = "platinum" if rng.random() < 0.25 else "premium"
        interval = "year" if rng.random() < self.world.profile.yearly_share else "month"
        price = o.PRICE_OBJECTS[price_id(tier, interval, self.currency)]
        sid, item_id = self.id("sub"), self.id("si")
        trial = trial_allowed and rng.random() < 0.35
        discounts = ([o.discount(self.id("di"), sid=sid, customer_id=self.customer_id, start=t, percent_off=20)]
                     if rng.random() < 0.06 else [])
        end = t + 14 * DAY if trial else _add_interval(t, interval)
        sub = o.subscription(sid, customer_id=self.customer_id, created=t, status="trialing" if trial else "active",
                             items=o.sub_items(sid, item_id, price, 1, t, end, t), currency=self.currency,
                             default_pm=self.pm["id"], trial_start=t if trial else None,
                             trial_end=end if trial else None, anchor=end if trial else t, discounts=discounts)
        self.sub, self.item_id, self.price, self.interval = sub, item_id, price, interval
        self.last_invoice: str | None = None
        self.states: list[SubState] = []
        self.story.subscriptions.append(self.states)
        if trial:
            self.record(t, "customer.subscription.created", {}, relevant=True)
            self.invoice(t, "subscription_create", t, end, amount=0)
        else:
            inv = self.invoice(t, "subscription_create", t, end)
            if self.attempt(inv, t + 20, first_payment=True) is True:
                self.settle(inv, t + 20)
                self.record(t, "customer.subscription.created", {}, relevant=True)
                return self.periods(t, end)
            self.sub = dict(sub, status="incomplete")
            self.record(t, "customer.subscription.created", {}, relevant=True)
            fix = t + int(rng.uniform(0.1, 20) * HOUR)
            if rng.random() < 0.4 and fix < self.now:
                self.new_card(fix)
                self.change(fix, "customer.subscription.updated", relevant=False, default_payment_method=self.pm["id"])
                if self.attempt(inv, fix + 30) is True:
                    self.settle(inv, fix + 30)
                    self.change(fix + 30, "customer.subscription.updated", status="active")
                    return self.periods(t, end)
            expire = t + 23 * HOUR
            if expire >= self.now:
                return None
            self.void(inv, expire)
            self.change(expire, "customer.subscription.updated", status="incomplete_expired", ended_at=expire)
            return expire
        return self.periods(t, end)

    def periods(self, start: int, end: int) -> int | None:
        rng = self.rng
        canceling = False
        while True:
            length = end - start
            status = self.sub["status"]
            if not canceling:
                if status == "trialing":
                    p_cancel = 0.30
                elif self.interval == "month":
                    p_cancel = 0.028 * self.churniness * self.world.profile.churn
                else:
                    p_cancel = 0.25 * self.churniness * self.world.profile.churn
                if rng.random() < p_cancel:
                    at = start + int(rng.random() * length)
                    if at < self.now:
                        feedback = _pick(rng, CANCEL_FEEDBACK)
                        details = {"reason": "cancellation_requested", "feedback": feedback,
                                   "comment": COMMENTS.get(feedback) if rng.random() < 0.3 else None}
                        if status == "active" and rng.random() < 0.08:
                            self.change(at, "customer.subscription.deleted", status="canceled", canceled_at=at,
                                        ended_at=at, cancellation_details=details)
                            return at
                        self.change(at, "customer.subscription.updated", cancel_at_period_end=True, cancel_at=end,
                                    canceled_at=at, cancellation_details=details)
                        canceling = True
                        undo = at + int(rng.random() * (end - at))
                        if rng.random() < 0.12 and undo < self.now:
                            self.change(undo, "customer.subscription.updated", cancel_at_period_end=False,
                                        cancel_at=None, canceled_at=None, cancellation_details=o.NO_CANCELLATION)
                            canceling = False
            if status == "active" and not canceling and rng.random() < 0.02:
                at = start + int(rng.random() * length)
                tier = self.price["product"].removeprefix("prod_demo_")
                target = "platinum" if tier == "premium" else ("premium" if rng.random() < 0.6 else None)
                if target and at < self.now:
                    self.price = o.PRICE_OBJECTS[price_id(target, self.interval, self.currency)]
                    self.change(at, "customer.subscription.updated",
                                items=o.sub_items(self.sub["id"], self.item_id, self.price, 1, start, end,
                                                  self.sub["created"]))
            if (status == "active" and not canceling and self.interval == "month" and not self.sub["pause_collection"]
                    and rng.random() < 0.004):
                at = start + int(rng.random() * length)
                if at < self.now:
                    resumes = _add_interval(at, "month") if rng.random() < 0.6 else _add_interval(
                        _add_interval(at, "month"), "month")
                    self.change(at, "customer.subscription.updated",
                                pause_collection={"behavior": "void", "resumes_at": resumes})
            if end >= self.now:
                return None
            if canceling:
                self.change(end, "customer.subscription.deleted", status="canceled", ended_at=end)
                return end
            pause = self.sub["pause_collection"]
            if pause and pause["resumes_at"] <= end:
                self.change(pause["resumes_at"], "customer.subscription.updated", pause_collection=None)
                pause = None
            new_end = _add_interval(end, self.interval)
            # Stripe moves the subscription into its new period at the renewal, before collecting
            # it: a renewal still being retried is past due in the new period. (Moved after the
            # payment, a past-due member stayed in a period that had ended days before.)
            self.change(end, "customer.subscription.updated", relevant=False,
                        items=o.sub_items(self.sub["id"], self.item_id, self.price, 1, end, new_end, self.sub["created"]))
            inv = self.invoice(end, "subscription_cycle", end, new_end)
            if pause:
                self.void(inv, end + HOUR)
            else:
                ended = self.renew(inv, end)
                if ended is not False:
                    return ended
            start, end = end, new_end

    def renew(self, inv: Obj, due: int) -> int | None | bool:
        """Collect a renewal: False when paid (go on), an end time when canceled, None when the
        story reaches ``now`` while collection is still under way."""
        rng = self.rng
        first = due + rng.randint(600, HOUR)
        if first >= self.now:
            return None
        if first >= self.pm_expires_at and rng.random() < 0.65:
            self.new_card(max(first - rng.randint(HOUR, 15 * DAY), self.states[-1].at))
            self.change(self.pm["created"], "customer.subscription.updated", relevant=False,
                        default_payment_method=self.pm["id"])
        trialing = self.sub["status"] == "trialing"
        code = self.attempt(inv, first, renewal=True)
        if code is True:
            self.settle(inv, first)
            if trialing:
                self.change(first, "customer.subscription.updated", status="active")
            return False
        self.change(first, "customer.subscription.updated", status="past_due")
        hard = code in HARD_DECLINES
        for days in RETRY_DAYS:
            at = due + days * DAY + rng.randint(0, 4 * HOUR)
            fixed = rng.random() < (0.30 if hard else 0.14)
            if fixed:
                at = first + int(rng.random() * (at - first))
            if at >= self.now:
                inv["next_payment_attempt"] = None if hard else at
                return None
            if fixed:
                self.new_card(at - 60)
                self.change(at - 60, "customer.subscription.updated", relevant=False,
                            default_payment_method=self.pm["id"])
            elif hard:
                continue
            result = self.attempt(inv, at, renewal=True, retry=not fixed)
            if result is True:
                self.settle(inv, at)
                self.change(at, "customer.subscription.updated", status="active")
                return False
            hard = result in HARD_DECLINES
        end = due + RETRY_DAYS[-1] * DAY + 5 * HOUR
        if end >= self.now:
            return None
        inv["status"] = "uncollectible"
        inv["next_payment_attempt"] = None
        inv["status_transitions"] = dict(inv["status_transitions"], marked_uncollectible_at=end)
        self.event(end, "invoice.marked_uncollectible", inv)
        self.change(end, "customer.subscription.deleted", status="canceled", canceled_at=end, ended_at=end,
                    cancellation_details={"reason": "payment_failed", "feedback": None, "comment": None})
        return end

    # ------------------------------------------------------------ objects

    def record(self, ts: int, kind: str, previous: Obj, *, relevant: bool = True) -> None:
        evt = self.id("evt")
        states = self.states
        if states and ts < states[-1].at:
            ts = states[-1].at  # a subscription's history is in time order
        state = SubState(ts, evt, kind, self.sub, previous, relevant)
        if not self.events and not relevant and states and not states[-1].relevant:
            states[-1] = state  # without events only the relevant states and the last one are read
        else:
            states.append(state)

    def change(self, ts: int, kind: str, *, relevant: bool = True, **fields: Any) -> None:
        previous = {k: self.sub.get(k) for k in fields}
        self.sub = {**self.sub, **fields}
        self.record(ts, kind, previous, relevant=relevant)

def simulate_member(world: World, index: int, *, events: bool = True) -> Story:
    """The deterministic story of member ``index`` (0-based) in ``world``. ``events=False`` (the
    bulk loader without a sandbox) skips the events and the subscription states that only events
    need; every object and id is the same."""
    return _Member(world, index, events).live()
