"""Drift between our rows and Stripe's: totals per object type and month, one member at a time.

``reconcile_totals`` lists each type from Stripe (optionally one month by ``created``) and compares
counts and amount sums per month and currency with our rows, matching by Stripe id so both sides
use Stripe's ``created`` month. ``reconcile_member`` compares one member's objects id by id.
``resync_member`` re-reads that member's objects from Stripe and applies them (parents first, in
one transaction, under the sync lock, recorded in ``sync_runs`` as kind ``member``).
Read-only functions never write; amounts stay integers in minor units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.models.billing import Dispute, Invoice, Payment, PaymentMethod, Refund
from core.models.catalogue import Price, Tier
from core.models.members import Member
from core.models.subscriptions import Subscription
from core.permissions import Actor, Permission, guarded
from core.stripe_gateway import GatewayError, StripeClient, reads
from core.stripe_mapping import DISPUTE_CLOSED, with_close_time
from core.sync import locks
from core.sync.apply import Applier
from core.sync.failures import failure_text
from core.sync.run import LOCK_NAME, RunResult, _record_end, _record_start, refresh_rollups
from core.timeutil import from_epoch, utc_now


@dataclass(frozen=True)
class Spec:
    model: Any
    id_column: str
    amount_column: str | None  # ours
    stripe_amount: str | None  # theirs
    status_column: str | None = None


SPECS: dict[str, Spec] = {
    "product": Spec(Tier, "stripe_product_id", None, None),
    "price": Spec(Price, "stripe_price_id", "unit_amount", "unit_amount"),
    "customer": Spec(Member, "stripe_customer_id", None, None),
    "subscription": Spec(Subscription, "stripe_subscription_id", None, None, "status"),
    "invoice": Spec(Invoice, "stripe_invoice_id", "total", "total", "status"),
    "charge": Spec(Payment, "stripe_charge_id", "amount", "amount", "status"),
    "refund": Spec(Refund, "stripe_refund_id", "amount", "amount", "status"),
    "dispute": Spec(Dispute, "stripe_dispute_id", "amount", "amount", "status"),
    "payment_method": Spec(PaymentMethod, "stripe_payment_method_id", None, None),
}
TOTALS_TYPES = ("product", "price", "customer", "subscription", "invoice", "charge", "refund", "dispute")


@dataclass
class ReconRow:
    object_type: str
    month: str
    currency: str
    stripe_count: int = 0
    our_count: int = 0
    stripe_sum: int = 0
    our_sum: int = 0
    missing: list[str] = field(default_factory=list)  # in Stripe, not ours
    extra: list[str] = field(default_factory=list)  # ours, not in Stripe

    @property
    def matches(self) -> bool:
        return self.stripe_count == self.our_count and self.stripe_sum == self.our_sum and not self.missing and not self.extra


def parse_month(value: str) -> tuple[datetime, datetime]:
    """``"2026-03"`` -> [start, next start) in UTC; ``ValueError`` with a sentence otherwise."""
    try:
        year, month = (int(p) for p in value.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except (ValueError, TypeError):
        raise ValueError(f"The month must look like 2026-03, not {value!r}.") from None
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _month(moment: datetime | None) -> str:
    return f"{moment:%Y-%m}" if moment else "unknown"


def reconcile_totals(
    engine: Engine,
    client: StripeClient,
    *,
    month: str | None = None,
    types: Iterable[str] = TOTALS_TYPES,
) -> list[ReconRow]:
    """Counts and sums per (type, month, currency), ours against Stripe's."""
    window = parse_month(month) if month else None
    params: dict[str, Any] = {}
    if window:
        params["created"] = {"gte": int(window[0].timestamp()), "lt": int(window[1].timestamp())}
    rows: list[ReconRow] = []
    for object_type in types:
        spec = SPECS[object_type]
        theirs: dict[str, tuple[str, str, int]] = {}
        for obj in reads.iter_all(client, object_type, params=params):
            amount = int(obj.get(spec.stripe_amount) or 0) if spec.stripe_amount else 0
            currency = str(obj.get("currency") or "").upper() if spec.stripe_amount else ""
            theirs[obj["id"]] = (_month(from_epoch(obj.get("created"))), currency, amount)
        buckets: dict[tuple[str, str], ReconRow] = {}

        def bucket(key: tuple[str, str], buckets: dict[tuple[str, str], ReconRow] = buckets,
                   object_type: str = object_type) -> ReconRow:
            return buckets.setdefault(key, ReconRow(object_type, key[0], key[1]))

        for m, cur, amount in theirs.values():
            row = bucket((m, cur))
            row.stripe_count += 1
            row.stripe_sum += amount
        id_col = getattr(spec.model, spec.id_column)
        cols = [id_col, spec.model.created_at]
        if spec.amount_column:
            cols += [getattr(spec.model, spec.amount_column), spec.model.currency]
        with Session(engine) as s:
            ours = s.execute(select(*cols).where(id_col.is_not(None))).all()
        seen: set[str] = set()
        for r in ours:
            sid = r[0]
            if sid in seen:
                continue
            seen.add(sid)
            if sid in theirs:
                m, cur = theirs[sid][0], theirs[sid][1]
            else:
                m = _month(r[1])
                cur = str(r[3]).upper() if spec.amount_column else ""
                if window and m != month:
                    continue
            row = bucket((m, cur))
            row.our_count += 1
            row.our_sum += int(r[2] or 0) if spec.amount_column else 0
            if sid not in theirs:
                row.extra.append(sid)
        for sid, (m, cur, _amount) in theirs.items():
            if sid not in seen:
                bucket((m, cur)).missing.append(sid)
        rows.extend(sorted(buckets.values(), key=lambda x: (x.month, x.currency)))
    return rows


@dataclass
class MemberDiff:
    object_type: str
    stripe_id: str
    problem: str  # "missing here", "not in Stripe", "status differs", "amount differs"
    ours: str = ""
    theirs: str = ""


def _member_customer(engine: Engine, member_id: int) -> str:
    with Session(engine) as s:
        member = s.get(Member, member_id)
        if member is None:
            raise ValueError(f"There is no member {member_id}.")
        if not member.stripe_customer_id:
            raise ValueError(f"Member {member_id} has no Stripe customer, so there is nothing to compare.")
        return member.stripe_customer_id


def fetch_member_objects(client: StripeClient, customer_id: str) -> dict[str, list[dict[str, Any]]]:
    """Everything Stripe holds for one customer, by type, parents first."""
    by_customer = {"customer": customer_id}
    out: dict[str, list[dict[str, Any]]] = {
        "customer": [reads.retrieve(client, "customer", customer_id)],
        "payment_method": reads.customer_payment_methods(client, customer_id),
        "subscription": list(reads.iter_all(client, "subscription", params=by_customer)),
        "invoice": list(reads.iter_all(client, "invoice", params=by_customer)),
        "charge": list(reads.iter_all(client, "charge", params=by_customer)),
        "refund": [],
        "dispute": [],
    }
    for charge in out["charge"]:
        if charge.get("amount_refunded"):
            out["refund"].extend(reads.iter_all(client, "refund", params={"charge": charge["id"]}))
        if charge.get("disputed"):
            out["dispute"].extend(reads.iter_all(client, "dispute", params={"charge": charge["id"]}))
    if any(d.get("status") in DISPUTE_CLOSED for d in out["dispute"]):
        closes = reads.dispute_close_times(client)  # a closed dispute's date is its event's, not this read's
        out["dispute"] = [with_close_time(d, closes) for d in out["dispute"]]
    return out


def reconcile_member(engine: Engine, client: StripeClient, member_id: int) -> list[MemberDiff]:
    """Differences between our rows for one member and Stripe's objects (empty: in agreement)."""
    customer_id = _member_customer(engine, member_id)
    theirs = fetch_member_objects(client, customer_id)
    diffs: list[MemberDiff] = []
    with Session(engine) as s:
        for object_type, objects in theirs.items():
            if object_type == "customer":
                continue
            spec = SPECS[object_type]
            id_col = getattr(spec.model, spec.id_column)
            cols = [id_col]
            cols.append(getattr(spec.model, spec.status_column) if spec.status_column else id_col)
            cols.append(getattr(spec.model, spec.amount_column) if spec.amount_column else id_col)
            ours = {r[0]: r for r in s.execute(select(*cols).where(spec.model.member_id == member_id, id_col.is_not(None)))}
            for obj in objects:
                mine = ours.pop(obj["id"], None)
                if mine is None:
                    diffs.append(MemberDiff(object_type, obj["id"], "missing here", "", str(obj.get("status", ""))))
                    continue
                if spec.status_column and obj.get("status") and str(mine[1]) != str(obj["status"]):
                    diffs.append(MemberDiff(object_type, obj["id"], "status differs", str(mine[1]), str(obj["status"])))
                if spec.amount_column and spec.stripe_amount and int(mine[2] or 0) != int(obj.get(spec.stripe_amount) or 0):
                    diffs.append(MemberDiff(object_type, obj["id"], "amount differs", str(mine[2]), str(obj.get(spec.stripe_amount))))
            if object_type in ("subscription", "invoice", "charge"):
                for sid in ours:
                    diffs.append(MemberDiff(object_type, sid, "not in Stripe"))
    return diffs


@guarded(Permission.RUN_SYNC)
def resync_member(
    engine: Engine,
    client: StripeClient,
    member_id: int,
    *,
    actor: Actor,
    holder: str | None = None,
    now: datetime | None = None,
) -> RunResult:
    """Re-read one member from Stripe and apply it, under the sync lock; never half-writes."""
    holder = holder or locks.default_holder()
    try:
        lock = locks.acquire(engine, LOCK_NAME, holder=holder)
    except locks.LockBusy as busy:
        run_id = _record_start(engine, "member", holder, status="skipped", error=str(busy))
        return RunResult(run_id, "member", "skipped", str(busy))
    run_id = _record_start(engine, "member", holder)
    counts: dict[str, Any] = {"member_id": member_id}
    try:
        customer_id = _member_customer(engine, member_id)
        objects = fetch_member_objects(client, customer_id)
        fetched_at = now or utc_now()
        applier = Applier(client, now=fetched_at)
        with Session(engine) as s:
            for object_type in reads.BACKFILL_ORDER:
                for obj in objects.get(object_type, []):
                    applier.apply(s, obj, state_at=fetched_at)
            s.commit()
        counts.update(applied=applier.applied, by_type=applier.by_type)
        message = f"Member {member_id} resynced from Stripe: {applier.applied} objects."
        _record_end(engine, run_id, "succeeded", None, counts)
        # Rebuild the rollups from this member's oldest object on (their history may have moved).
        created: list[int] = [o["created"] for objs in objects.values() for o in objs if o.get("created")]
        refresh_rollups(engine, since=from_epoch(min(created)) if created else None)
        return RunResult(run_id, "member", "succeeded", message, counts)
    except (GatewayError, ValueError) as exc:
        message = getattr(exc, "sentence", None) or str(exc)
        _record_end(engine, run_id, "failed", message, counts)
        return RunResult(run_id, "member", "failed", message, counts)
    except Exception as exc:
        message = f"Resync failed unexpectedly: {failure_text(exc)}"[:1000]  # no member data from a DB error
        _record_end(engine, run_id, "failed", message, counts)
        return RunResult(run_id, "member", "failed", message, counts)
    finally:
        lock.release()
