"""Stories -> table rows, through the same mapping functions the Stripe sync uses.

Every Stripe object of a chunk of stories goes through ``core.stripe_mapping``; parents are
resolved in memory, and ids are chunk-local (0, 1, 2, ... per table): the loader adds each
table's offset when it inserts, so chunks can be built in worker processes and still get the
same ids as a single-process run. Membership changes come from ``derive_changes`` over each
subscription's state history, exactly as the store derives them from events.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.stripe_mapping import map_charge, map_customer, map_dispute, map_invoice, map_payment_method, map_refund
from core.stripe_mapping import map_subscription as _map_subscription
from core.stripe_store.derived import RENEWAL, number_attempts
from core.stripe_store.rules import derive_changes, past_due_since
from core.timeutil import from_epoch
from demo.simulate import Story, SubState

Row = dict[str, Any]

# Insert order (parents first) and, per table, the integer columns that hold chunk-local ids.
LOCAL_IDS: dict[str, dict[str, str]] = {
    "members": {"id": "members"},
    "payment_methods": {"id": "payment_methods", "member_id": "members"},
    "subscriptions": {"id": "subscriptions", "member_id": "members", "default_payment_method_id": "payment_methods"},
    "subscription_items": {"id": "subscription_items", "subscription_id": "subscriptions"},
    "membership_changes": {"id": "membership_changes", "member_id": "members", "subscription_id": "subscriptions"},
    "invoices": {"id": "invoices", "member_id": "members", "subscription_id": "subscriptions"},
    "invoice_lines": {"id": "invoice_lines", "invoice_id": "invoices"},
    "invoice_payment_refs": {"id": "invoice_payment_refs", "invoice_id": "invoices"},
    "payments": {"id": "payments", "member_id": "members", "invoice_id": "invoices",
                 "payment_method_id": "payment_methods"},
    "refunds": {"id": "refunds", "payment_id": "payments", "member_id": "members"},
    "disputes": {"id": "disputes", "payment_id": "payments", "member_id": "members"},
}
TABLES = tuple(LOCAL_IDS)


@dataclass(frozen=True)
class Catalogue:
    """What the chunk needs from the database: global ids of prices and tiers, tier ranks."""

    price_ids: dict[str, int]  # stripe price id -> prices.id
    tier_ids: dict[str, int]  # stripe product id -> tiers.id
    ranks: dict[int, int]  # tiers.id -> rank
    now: datetime


def map_subscription_row(obj: dict, at: datetime, cat: Catalogue) -> tuple[Row, list[Row]]:
    row, items = _map_subscription(obj, at=at)
    row["price_id"] = cat.price_ids[row.pop("stripe_price_id")]
    row["tier_id"] = cat.tier_ids[row.pop("stripe_product_id")]
    row.pop("stripe_customer_id")
    for item in items:
        item["price_id"] = cat.price_ids[item.pop("stripe_price_id")]
    return row, items


class _Chunk:
    def __init__(self, cat: Catalogue):
        self.cat = cat
        self.rows: dict[str, list[Row]] = {t: [] for t in TABLES}
        self.counters: dict[str, int] = defaultdict(int)

    def add(self, table: str, row: Row) -> int:
        new_id = row["id"] = self.counters[table]
        self.counters[table] += 1
        self.rows[table].append(row)
        return new_id

    def story(self, story: Story) -> None:
        now = self.cat.now
        if story.customer is None:
            assert story.member is not None
            self.add("members", dict(story.member, version=1))
            return
        member = map_customer(story.customer)
        default_pm = member["stripe_default_payment_method_id"]
        member_id = self.add("members", dict(member, version=1, stripe_state_at=now))
        pms: dict[str, int] = {}
        for pm in story.payment_methods:
            row = map_payment_method(pm)
            row.pop("stripe_customer_id")
            pms[pm["id"]] = self.add("payment_methods", dict(row, member_id=member_id, stripe_state_at=now,
                                                             is_default=pm["id"] == default_pm))
        subs: dict[str, int] = {}
        for states in story.subscriptions:
            subs[states[-1].obj["id"]] = self.subscription(states, member_id, pms)
        invoices: dict[str, int] = {}
        price_ids = self.cat.price_ids
        by_payment: dict[str, int] = {}
        renewals: dict[int, bool] = {}
        for inv in story.invoices:
            row, lines = map_invoice(inv)
            refs = row.pop("payment_refs")
            row.pop("stripe_customer_id")
            row["subscription_id"] = subs.get(row.pop("stripe_subscription_id") or "")
            row.update(member_id=member_id, stripe_state_at=now)
            inv_id = invoices[inv["id"]] = self.add("invoices", row)
            renewals[inv_id] = row["billing_reason"] == RENEWAL
            for ref in dict.fromkeys(refs):
                by_payment[ref] = inv_id
                self.add("invoice_payment_refs", {"invoice_id": inv_id, "payment_ref": ref})
            for line in lines:
                line.update(invoice_id=inv_id, price_id=price_ids.get(line.pop("stripe_price_id") or ""))
                self.add("invoice_lines", line)
        charges: dict[str, int] = {}
        payments = []
        for ch in story.charges:
            row = map_charge(ch)
            row.pop("stripe_customer_id")
            pi = row["stripe_payment_intent_id"]
            paid_inv = by_payment.get(pi or "", by_payment.get(ch["id"]))
            if paid_inv is None and row["stripe_invoice_id"]:
                paid_inv = invoices.get(row["stripe_invoice_id"])
            row.pop("stripe_invoice_id")
            row.update(member_id=member_id, invoice_id=paid_inv,
                       is_renewal=paid_inv is not None and renewals.get(paid_inv, False),
                       payment_method_id=pms.get(row.pop("stripe_payment_method_id") or ""), stripe_state_at=now)
            charges[ch["id"]] = self.add("payments", row)
            payments.append(row)
        number_attempts(payments)  # the store's own rule, over the member's attempts
        for re in story.refunds:
            row = map_refund(re)
            row["payment_id"] = charges[row.pop("stripe_charge_id")]
            self.add("refunds", dict(row, member_id=member_id, stripe_state_at=now))
        for dp in story.disputes:
            row = map_dispute(dp, from_epoch(story.dispute_closed.get(dp["id"])))
            row["payment_id"] = charges[row.pop("stripe_charge_id")]
            self.add("disputes", dict(row, member_id=member_id, stripe_state_at=now))

    def subscription(self, states: list[SubState], member_id: int, pms: dict[str, int]) -> int:
        cat = self.cat
        sub_id = self.counters["subscriptions"]
        before: Row | None = None
        for state in states:
            if not state.relevant:
                continue
            at = from_epoch(state.at)
            row, _ = map_subscription_row(state.obj, at, cat)
            row["past_due_since"] = past_due_since(before, row, at)
            change = derive_changes(before, row, at, cat.ranks)
            if change is not None:
                self.add("membership_changes", dict(change, member_id=member_id, subscription_id=sub_id,
                                                    source="demo", stripe_event_id=state.event_id, recorded_at=at))
            before = row
        final = states[-1]
        row, items = map_subscription_row(final.obj, cat.now, cat)
        row["past_due_since"] = (before or {}).get("past_due_since") if row["status"] == "past_due" else None
        row.pop("stripe_default_payment_method_id", None)
        default_pm = final.obj.get("default_payment_method")
        self.add("subscriptions", dict(row, member_id=member_id, default_payment_method_id=pms.get(default_pm or ""),
                                       updated_at=from_epoch(final.at), stripe_state_at=cat.now, version=1,
                                       complimentary=False))
        for item in items:
            self.add("subscription_items", dict(item, subscription_id=sub_id))
        return sub_id


def chunk_rows(stories: list[Story], cat: Catalogue) -> dict[str, list[Row]]:
    """Rows per table for these stories, with chunk-local ids (see ``LOCAL_IDS``)."""
    chunk = _Chunk(cat)
    for story in stories:
        chunk.story(story)
    return chunk.rows
