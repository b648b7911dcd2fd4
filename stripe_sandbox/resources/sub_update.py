"""Subscription updates: price/quantity changes with prorations (or an immediate invoice),
``cancel_at_period_end`` / ``cancel_at``, ``pause_collection``, ``trial_end``, metadata.

A mixin of ``Subscriptions`` (which supplies ``_price``, ``_item``, ``_pm`` and ``_check_items``).
"""

from __future__ import annotations

from typing import Any

from stripe_sandbox import billing
from stripe_sandbox.api import Api
from stripe_sandbox.errors import invalid, missing_param
from stripe_sandbox.forms import as_list, metadata_update, to_bool, to_int
from stripe_sandbox.resources.payments import card_error

ENDED = ("canceled", "incomplete_expired")
PRORATION = ("create_prorations", "always_invoice", "none")
PAUSE = ("keep_as_draft", "mark_uncollectible", "void")


class SubscriptionUpdates:
    api: Api

    def _price(self, ref: Any, param: str) -> dict[str, Any]:
        raise NotImplementedError

    def _item(self, sub_id: str, price: dict[str, Any], qty: int, at: int, meta: Any = None) -> dict[str, Any]:
        raise NotImplementedError

    def _pm(self, ref: Any, cus: dict[str, Any], param: str) -> str:
        raise NotImplementedError

    def _check_items(self, items: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    # -- update -------------------------------------------------------------------------------
    def update(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        api = self.api
        sub = api.load(id, "subscription")
        before = api.deep(sub)
        cus = api.load(sub["customer"], "customer", "customer")
        now = api.now(cus["id"])
        if sub["status"] in ENDED:
            allowed = {"metadata", "cancellation_details", "expand"}
            if set(p) - allowed:
                raise invalid("A canceled subscription can only update its cancellation_details and metadata.")
        behavior = p.get("proration_behavior") or "create_prorations"
        if behavior not in PRORATION:
            raise invalid(f"Invalid proration_behavior: must be one of {', '.join(PRORATION)}",
                          param="proration_behavior")
        pay_behavior = p.get("payment_behavior") or "allow_incomplete"
        if "metadata" in p:
            sub["metadata"] = metadata_update(sub.get("metadata"), p["metadata"])
        if "description" in p:
            sub["description"] = p["description"] or None
        if isinstance(p.get("cancellation_details"), dict):
            for k in ("comment", "feedback"):
                if k in p["cancellation_details"]:
                    sub["cancellation_details"][k] = p["cancellation_details"][k] or None
        if p.get("default_payment_method") not in (None,):
            ref = p["default_payment_method"]
            sub["default_payment_method"] = self._pm(ref, cus, "default_payment_method") if ref else None
        if "pause_collection" in p:
            pc = p["pause_collection"]
            if pc in ("", None):
                sub["pause_collection"] = None
            elif isinstance(pc, dict):
                if pc.get("behavior") not in PAUSE:
                    raise invalid(f"Invalid pause_collection[behavior]: must be one of {', '.join(PAUSE)}",
                                  param="pause_collection[behavior]")
                resumes = to_int(pc["resumes_at"], "pause_collection[resumes_at]") if pc.get("resumes_at") else None
                if resumes is not None and resumes <= now:
                    raise invalid("pause_collection[resumes_at] must be in the future.",
                                  param="pause_collection[resumes_at]")
                sub["pause_collection"] = {"behavior": pc["behavior"], "resumes_at": resumes}
            else:
                raise invalid("Invalid pause_collection: must be a hash or an empty string.", param="pause_collection")
        if "cancel_at_period_end" in p:
            flag = to_bool(p["cancel_at_period_end"], "cancel_at_period_end")
            sub["cancel_at_period_end"] = flag
            sub["cancel_at"] = billing.period_of(sub)[1] if flag else None
            sub["canceled_at"] = now if flag else None
            if not flag:
                sub["cancellation_details"] = {"comment": None, "feedback": None, "reason": None}
            else:
                sub["cancellation_details"]["reason"] = "cancellation_requested"
        if "cancel_at" in p:
            value = p["cancel_at"]
            if value in ("", None):
                sub.update(cancel_at=None, cancel_at_period_end=False, canceled_at=None)
            else:
                at = to_int(value, "cancel_at")
                if at <= now:
                    raise invalid("cancel_at must be in the future.", param="cancel_at")
                sub.update(cancel_at=at, cancel_at_period_end=at == billing.period_of(sub)[1], canceled_at=now)
                sub["cancellation_details"]["reason"] = "cancellation_requested"
        invoice: dict[str, Any] | None = None
        if "items" in p:
            invoice = self._change_items(sub, as_list(p["items"]), behavior, now,
                                         p.get("proration_date"), p.get("billing_cycle_anchor"))
        elif p.get("billing_cycle_anchor") == "now":
            invoice = self._change_items(sub, [], behavior, now, None, "now")
        if "trial_end" in p:
            invoice = self._trial_end(sub, p["trial_end"], now) or invoice
        api.save(sub)
        if invoice is not None and not api.dry_run:
            result = billing.attempt(api, invoice, sub, at=now)
            if result is not None and not result.ok:
                if pay_behavior == "error_if_incomplete":
                    raise card_error(result)
                billing.schedule_retry(api, invoice, result, now)
                if sub["status"] in ("active", "trialing"):
                    sub["status"] = "past_due"
            elif sub["status"] in ("past_due", "unpaid", "incomplete"):
                sub["status"] = "active"
            api.save(sub)
        previous = {k: before[k] for k in before if k != "_sandbox" and before[k] != sub.get(k)}
        if previous:
            api.emit("customer.subscription.updated", sub, previous)
        return sub

    def _change_items(self, sub: dict[str, Any], raw: list[Any], behavior: str, now: int,
                      proration_date: Any, anchor: Any) -> dict[str, Any] | None:
        api = self.api
        old_items = api.deep(sub["items"]["data"])
        items = api.deep(old_items)
        by_id = {i["id"]: i for i in items}
        for n, it in enumerate(raw):
            if not isinstance(it, dict):
                raise invalid(f"Invalid items[{n}]", param=f"items[{n}]")
            if it.get("id"):
                item = by_id.get(it["id"])
                if item is None:
                    raise invalid(f"Subscription item {it['id']} does not belong to {sub['id']}.", param=f"items[{n}][id]")
                if to_bool(it.get("deleted", False), f"items[{n}][deleted]"):
                    items.remove(item)
                    continue
                if it.get("price"):
                    item["price"] = self._price(it["price"], f"items[{n}][price]")
                if it.get("quantity") not in (None, ""):
                    item["quantity"] = to_int(it["quantity"], f"items[{n}][quantity]")
                if "metadata" in it:
                    item["metadata"] = metadata_update(item.get("metadata"), it["metadata"])
            else:
                if not it.get("price"):
                    raise missing_param(f"items[{n}][price]")
                item = self._item(sub["id"], self._price(it["price"], f"items[{n}][price]"),
                                  to_int(it.get("quantity", 1), f"items[{n}][quantity]"), now, it.get("metadata"))
                start, end = billing.period_of(sub)
                item["current_period_start"], item["current_period_end"] = start, end
                items.append(item)
        if not items:
            raise invalid("A subscription must have at least one item.", param="items")
        self._check_items(items)
        if items[0]["price"]["currency"] != sub["currency"]:
            raise invalid(f"The price's currency ({items[0]['price']['currency']}) does not match the "
                          f"subscription's currency ({sub['currency']}).", param="items")
        old_rec, new_rec = old_items[0]["price"]["recurring"], items[0]["price"]["recurring"]
        interval_changed = (old_rec["interval"], old_rec.get("interval_count", 1)) != \
                           (new_rec["interval"], new_rec.get("interval_count", 1))
        at = to_int(proration_date, "proration_date") if proration_date not in (None, "") else now
        trialing = sub["status"] == "trialing"
        prorate = behavior != "none" and not trialing
        if interval_changed or anchor == "now":
            # Stripe resets the billing cycle and invoices at once on an interval change.
            credits = [i for i in billing.proration_items(api, sub, old_items, [], at) if i["amount"] < 0] \
                if prorate else []
            sub["items"]["data"] = items
            sub["billing_cycle_anchor"] = now
            end = billing.next_period_end(now, new_rec, now)
            billing.set_period(sub, now, end)
            sub["items"]["total_count"] = len(items)
            if trialing:
                return None
            for ii in credits:
                api.save(ii)
            inv = billing.new_invoice(api, sub, billing_reason="subscription_update", at=now, period=(now, now))
            billing.add_lines(api, inv, sub, billing.pending_items(api, sub), (now, end))
            return self._open(inv, sub, now)
        extra = billing.proration_items(api, sub, old_items, items, at) if prorate else []
        sub["items"]["data"] = items
        sub["items"]["total_count"] = len(items)
        for ii in extra:
            api.save(ii)
            api.emit("invoiceitem.created", ii)
        if behavior == "always_invoice" and extra:
            inv = billing.new_invoice(api, sub, billing_reason="subscription_update", at=now, period=(now, now))
            billing.add_lines(api, inv, sub, billing.pending_items(api, sub), None)
            return self._open(inv, sub, now)
        return None

    def _open(self, inv: dict[str, Any], sub: dict[str, Any], now: int) -> dict[str, Any]:
        self.api.save(inv)
        self.api.emit("invoice.created", inv)
        billing.finalize(self.api, inv, now)
        sub["latest_invoice"] = inv["id"]
        return inv

    def _trial_end(self, sub: dict[str, Any], value: Any, now: int) -> dict[str, Any] | None:
        if value == "now":
            if sub["status"] != "trialing":
                return None
            rec = sub["items"]["data"][0]["price"]["recurring"]
            end = billing.next_period_end(now, rec, now)
            sub.update(trial_end=now, billing_cycle_anchor=now)
            billing.set_period(sub, now, end)
            inv = billing.new_invoice(self.api, sub, billing_reason="subscription_update", at=now, period=(now, now))
            billing.add_lines(self.api, inv, sub, billing.pending_items(self.api, sub), (now, end))
            if sub["status"] == "trialing":
                sub["status"] = "active"
            return self._open(inv, sub, now)
        at = to_int(value, "trial_end")
        if at <= now:
            raise invalid("Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end")
        if sub["status"] not in ("trialing", "active"):
            raise invalid(f"Cannot set a trial on a subscription whose status is {sub['status']}.", param="trial_end")
        start = billing.period_of(sub)[0]
        sub.update(trial_end=at, trial_start=sub.get("trial_start") or now, status="trialing", billing_cycle_anchor=at)
        billing.set_period(sub, start, at)
        if sub.get("cancel_at_period_end"):
            sub["cancel_at"] = at
        return None
