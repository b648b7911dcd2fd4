"""Invoice numbers never repeat across customers, as in Stripe (each customer has its own
``invoice_prefix``, and ``next_invoice_sequence`` continues its history). The sandbox numbered
every imported demo member's next invoice ``DEMO0000-0001``: the prefix came from the first
letters of the id, which all demo ids share, and the sequence restarted at 1."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.sandbox import import_demo_world

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def test_new_invoices_of_imported_members_continue_their_own_numbers(stripe_env, sandbox):
    objects = import_demo_world(sandbox, seed=29, members=120, now=NOW)
    client = stripe_env.client
    prices = {o["id"]: o for o in objects if o.get("object") == "price"}
    live = [o for o in objects if o.get("object") == "subscription" and o["status"] == "active"
            and not o.get("cancel_at_period_end") and not o.get("discounts")][:3]
    assert len(live) == 3
    for sub in live:
        item = sub["items"]["data"][0]
        current = prices[item["price"]["id"]]
        other = next(p for p in prices.values() if p["currency"] == current["currency"]
                     and p["recurring"]["interval"] == current["recurring"]["interval"]
                     and p["unit_amount"] > 0 and p["unit_amount"] != current["unit_amount"])
        client.v1.subscriptions.update(sub["id"], {"items": [{"id": item["id"], "price": other["id"]}],
                                                   "proration_behavior": "always_invoice"})
    numbers = [inv.number for inv in client.v1.invoices.list({"limit": 100}).auto_paging_iter()
               if inv.number is not None]
    assert len(numbers) > 3 and len(numbers) == len(set(numbers))
    for sub in live:
        customer = client.v1.customers.retrieve(sub["customer"])
        newest = client.v1.invoices.list({"customer": sub["customer"], "limit": 1}).data[0]
        assert newest.number.startswith(customer.invoice_prefix + "-")
        assert int(newest.number.rsplit("-", 1)[1]) == customer.next_invoice_sequence - 1
