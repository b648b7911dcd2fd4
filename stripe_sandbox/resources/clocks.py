"""Test clocks: create/retrieve/list/delete/advance, and everything that happens while time moves.

Advancing a clock walks, in time order, through every scheduled thing of the clock's customers'
subscriptions: cancellations (``cancel_at`` / end of period), pause resumptions, trial ends,
renewals (new invoice, charge of the default card), payment retries and the end of the retry
window (cancel with ``payment_failed``), and incomplete subscriptions expiring after 23 hours.
Each step runs at its own simulated time, which is the ``created`` of the events it emits.
"""

from __future__ import annotations

from typing import Any

from stripe_sandbox import billing
from stripe_sandbox.api import Api, new_id
from stripe_sandbox.errors import invalid, missing_param
from stripe_sandbox.forms import to_int
from stripe_sandbox.resources.subscriptions import ENDED, after_payment, end_subscription

INCOMPLETE_EXPIRES = 23 * 3600
TRIAL_WARNING = 3 * 86400  # customer.subscription.trial_will_end, three days before the end
_MAX_STEPS = 100_000


def register(api: Api) -> None:
    base = "/v1/test_helpers/test_clocks"
    api.route("POST", base, lambda p: create(api, p))
    api.route("GET", base, lambda p: api.list("test_helpers.test_clock", p, base))
    api.route("GET", base + "/{id}", lambda p, id: api.load(id, "test_helpers.test_clock"))
    api.route("DELETE", base + "/{id}", lambda p, id: delete(api, id))
    api.route("POST", base + "/{id}/advance", lambda p, id: advance(api, id, p))


def create(api: Api, p: dict[str, Any]) -> dict[str, Any]:
    if p.get("frozen_time") in (None, ""):
        raise missing_param("frozen_time")
    frozen = to_int(p["frozen_time"], "frozen_time")
    clock = {"id": new_id("clock"), "object": "test_helpers.test_clock", "created": api.now(),
             "deletes_after": api.now() + 30 * billing.DAY, "frozen_time": frozen, "livemode": False,
             "name": p.get("name") or None, "status": "ready",
             "status_details": {"advancing": None}}
    api.save(clock)
    api.emit("test_helpers.test_clock.created", clock)
    return clock


def delete(api: Api, clock_id: str) -> dict[str, Any]:
    clock = api.load(clock_id, "test_helpers.test_clock")
    for cus in api.select("customer", [("json_extract(data, '$.test_clock') = ?", [clock_id])]):
        cus["deleted"] = True
        api.save(cus)
    clock["deleted"] = True
    api.save(clock)
    api.emit("test_helpers.test_clock.deleted", clock)
    return {"id": clock_id, "object": "test_helpers.test_clock", "deleted": True}


def advance(api: Api, clock_id: str, p: dict[str, Any]) -> dict[str, Any]:
    clock = api.load(clock_id, "test_helpers.test_clock")
    if p.get("frozen_time") in (None, ""):
        raise missing_param("frozen_time")
    target = to_int(p["frozen_time"], "frozen_time")
    if target < clock["frozen_time"]:
        raise invalid("The test clock can only be advanced forward in time.", param="frozen_time")
    api.forced_now = clock["frozen_time"]
    try:
        for _ in range(_MAX_STEPS):
            step = _next_step(api, clock_id, target)
            if step is None:
                break
            at, _prio, kind, obj_id = step
            clock["frozen_time"] = max(clock["frozen_time"], at)
            api.save(clock)
            api.forced_now = clock["frozen_time"]
            _run(api, kind, obj_id, at)
        clock["frozen_time"] = target
        clock["status"] = "ready"
        api.save(clock)
        api.forced_now = target
        api.emit("test_helpers.test_clock.ready", clock)
    finally:
        api.forced_now = None
    return clock


def _next_step(api: Api, clock_id: str, target: int) -> tuple[int, int, str, str] | None:
    steps: list[tuple[int, int, str, str]] = []
    customers = [c["id"] for c in api.select("customer", [("json_extract(data, '$.test_clock') = ?", [clock_id])])]
    if not customers:
        return None
    marks = ",".join("?" * len(customers))
    for sub in api.select("subscription", [(f"customer IN ({marks})", customers)]):
        if sub["status"] in ENDED:
            continue
        start, end = billing.period_of(sub)
        if sub["status"] == "incomplete":
            steps.append((sub["created"] + INCOMPLETE_EXPIRES, 0, "expire", sub["id"]))
            continue
        if sub.get("cancel_at"):
            steps.append((sub["cancel_at"], 1, "cancel_at", sub["id"]))
        pc = sub.get("pause_collection") or {}
        if pc.get("resumes_at"):
            steps.append((pc["resumes_at"], 2, "resume", sub["id"]))
        if sub["status"] == "trialing" and sub.get("trial_end"):
            steps.append((sub["trial_end"], 3, "trial_end", sub["id"]))
            warn = sub["trial_end"] - TRIAL_WARNING
            if warn > (sub.get("trial_start") or 0) and not (sub.get("_sandbox") or {}).get("trial_warned"):
                steps.append((warn, 2, "trial_will_end", sub["id"]))
        elif sub["status"] in ("active", "past_due", "unpaid"):
            steps.append((end, 3, "renew", sub["id"]))
    for inv in api.select("invoice", [(f"customer IN ({marks})", customers), ("status = 'open'", [])]):
        if inv.get("next_payment_attempt") and inv.get("auto_advance"):
            steps.append((inv["next_payment_attempt"], 4, "retry", inv["id"]))
        elif (inv.get("_sandbox") or {}).get("dunning_ends_at") and inv.get("auto_advance"):
            steps.append((inv["_sandbox"]["dunning_ends_at"], 5, "dunning_end", inv["id"]))
    due = [s for s in steps if s[0] <= target]
    return min(due) if due else None


def _run(api: Api, kind: str, obj_id: str, at: int) -> None:
    if kind in ("retry", "dunning_end"):
        inv = api.get(obj_id)
        assert inv is not None
        sub_id = ((inv.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        sub = api.get(sub_id) if sub_id else None
        if kind == "retry":
            inv["next_payment_attempt"] = None
            result = billing.attempt(api, inv, sub, at=at)
            if result is not None and not result.ok:
                billing.schedule_retry(api, inv, result, at)
            else:
                inv["_sandbox"]["dunning_ends_at"] = None
                api.save(inv)
                after_payment(api, sub, True)
            return
        inv["_sandbox"]["dunning_ends_at"] = None
        api.save(inv)
        if sub is not None and sub["status"] not in ENDED:
            outcome = api.store.meta_get("after_retries", "cancel")
            if outcome == "unpaid":
                billing.set_status(api, sub, "unpaid")
            elif outcome == "cancel":
                end_subscription(api, sub, reason="payment_failed")
        return
    sub = api.get(obj_id)
    assert sub is not None
    if kind == "expire":
        for inv in api.select("invoice", [("ref = ?", [sub["id"]]), ("status = 'open'", [])]):
            inv.update(status="void", next_payment_attempt=None)
            inv["status_transitions"]["voided_at"] = at
            api.save(inv)
            api.emit("invoice.voided", inv)
        sub["ended_at"] = at
        billing.set_status(api, sub, "incomplete_expired")
    elif kind == "cancel_at":
        sub["canceled_at"] = sub.get("canceled_at") or at
        end_subscription(api, sub, reason=sub["cancellation_details"].get("reason") or "cancellation_requested")
    elif kind == "trial_will_end":
        sub.setdefault("_sandbox", {})["trial_warned"] = True
        api.save(sub)
        api.emit("customer.subscription.trial_will_end", sub)
    elif kind == "resume":
        previous = {"pause_collection": sub["pause_collection"]}
        sub["pause_collection"] = None
        api.save(sub)
        api.emit("customer.subscription.updated", sub, previous)
    elif kind in ("renew", "trial_end"):
        _renew(api, sub, at, trial_end=kind == "trial_end")


def _renew(api: Api, sub: dict[str, Any], at: int, *, trial_end: bool) -> None:
    previous: dict[str, Any] = {"items": api.deep(sub["items"]), "latest_invoice": sub.get("latest_invoice")}
    rec = sub["items"]["data"][0]["price"]["recurring"]
    end = billing.next_period_end(at, rec, sub["billing_cycle_anchor"])
    billing.set_period(sub, at, end)
    if trial_end:
        previous["status"] = sub["status"]
        sub["status"] = "active"
    old_start = previous["items"]["data"][0]["current_period_start"]
    inv = billing.new_invoice(api, sub, billing_reason="subscription_cycle", at=at, period=(old_start, at))
    billing.add_lines(api, inv, sub, billing.pending_items(api, sub), (at, end))
    sub["latest_invoice"] = inv["id"]
    api.save(inv)
    api.emit("invoice.created", inv)
    pause = (sub.get("pause_collection") or {}).get("behavior")
    if pause == "keep_as_draft":
        inv["auto_advance"] = False
        api.save(inv)
    elif pause == "void":
        billing.finalize(api, inv, at)
        inv.update(status="void", amount_remaining=0)
        inv["status_transitions"]["voided_at"] = at
        api.save(inv)
        api.emit("invoice.voided", inv)
    elif pause == "mark_uncollectible":
        billing.finalize(api, inv, at)
        inv["status"] = "uncollectible"
        inv["status_transitions"]["marked_uncollectible_at"] = at
        api.save(inv)
        api.emit("invoice.marked_uncollectible", inv)
    elif sub["status"] == "unpaid":
        # Stripe keeps invoicing an unpaid subscription but does not try to collect.
        inv["auto_advance"] = False
        billing.finalize(api, inv, at)
    else:
        billing.finalize(api, inv, at)
        result = billing.attempt(api, inv, sub, at=at)
        if result is not None and not result.ok:
            billing.schedule_retry(api, inv, result, at)
            if sub["status"] in ("active", "trialing"):
                previous.setdefault("status", sub["status"])
                sub["status"] = "past_due"
    api.save(sub)
    api.emit("customer.subscription.updated", sub, previous)
