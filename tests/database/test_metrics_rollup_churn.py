"""The trial and cancellation rollups (daily and monthly): an incremental refresh equals a full
rebuild, also when a trial converts weeks after it ended (its invoice paid late, the trial's month
before the refresh's) or an old subscription is cancelled; and the answers from them equal the
answers from the rows, with ``now`` inside a day."""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import text

from core.metrics import Query, compute
from core.metrics.rollups import refresh, state
from core.metrics.source import raw_rows
from tests.support.factories import (
    at,
    make_change,
    make_invoice,
    make_member,
    make_payment,
    make_price,
    make_subscription,
    make_tier,
)
from tests.support.worlds import RANDOM_NOW as NOW
from tests.support.worlds import build_random_world

_GROUP = ("currency", "tier_id", "interval", "country")
TABLES = {"metrics_daily_trials": (("day", *_GROUP), ("trials", "converted")),
          "metrics_daily_cancellations": (("day", *_GROUP, "reason", "churn_kind"), ("changes",)),
          "metrics_monthly_trials": (("month", *_GROUP), ("trials", "converted")),
          "metrics_monthly_cancellations": (("month", *_GROUP, "reason", "churn_kind"), ("changes",))}


def _rows(engine) -> dict[str, list]:
    out = {}
    with engine.connect() as conn:
        for table, (keys, measures) in TABLES.items():
            rows = conn.execute(text(f"SELECT {', '.join(keys + measures)} FROM {table}")).all()
            agg: dict[tuple, list[int]] = {}
            for r in rows:  # sum partial rows of one group, as the readers do
                key = tuple(str(v) for v in r[:len(keys)])
                vals = [int(v) for v in r[len(keys):]]
                agg[key] = [a + b for a, b in zip(agg.get(key, [0] * len(vals)), vals, strict=True)]
            out[table] = sorted((k, tuple(v)) for k, v in agg.items() if any(v))
    return out


def test_incremental_refresh_equals_full_rebuild(engine, session):
    build_random_world(session, 31)
    tier = make_tier(session, code="late", rank=3)
    price = make_price(session, tier=tier, unit_amount=2000)
    member = make_member(session, country="DE")
    # The trial ended in May, a month before the refresh's first day: its month's sums are redone too.
    trial_end = NOW - timedelta(days=40)
    sub = make_subscription(session, member=member, price=price, mrr_minor=2000, status="past_due",
                            trial_start=trial_end - timedelta(days=14), trial_end=trial_end)
    invoice = make_invoice(session, member=member, subscription=sub, amount=2000, status="open", created_at=trial_end)
    old = make_member(session, country="FR")
    old_sub = make_subscription(session, member=old, price=price, mrr_minor=2000)
    make_change(session, subscription=old_sub, effective_at=at("2025-08-01 00:00"), mrr_after=2000, kind="created")
    session.commit()
    refresh(engine, now=NOW)
    assert _snapshot_rates(engine) == _snapshot_rates(engine, raw=True)

    since = NOW - timedelta(days=2)
    # The trial's invoice is paid weeks after the trial ended (no change is recorded for it) ...
    invoice.status = "paid"
    make_payment(session, member=member, amount=2000, invoice_id=invoice.id, created_at=NOW - timedelta(hours=30))
    # ... and a member of a year ago cancels, effective yesterday.
    make_change(session, subscription=old_sub, effective_at=NOW - timedelta(hours=20), mrr_before=2000, mrr_after=0,
                kind="canceled", to_status="canceled", churn_kind="voluntary")
    session.commit()
    refresh(engine, since, now=NOW)
    incremental = _rows(engine)
    assert _snapshot_rates(engine) == _snapshot_rates(engine, raw=True)
    refresh(engine, now=NOW)
    assert _rows(engine) == incremental


def test_a_trial_without_a_price_of_its_own_moves_with_a_price_change(engine, session):
    """A trial whose subscription had no change setting its price by its end is filed under the
    subscription's price now: a price change long after it moves its old day (redone), while a
    trial with a price of its own stays put."""
    build_random_world(session, 32)
    tier = make_tier(session, code="plain", rank=3)
    cheap, dear = make_price(session, tier=tier, unit_amount=1000), make_price(session, tier=tier, unit_amount=3000,
                                                                            interval="year")
    ended = NOW - timedelta(days=120)
    subs = []
    for own_price in (False, True):
        member = make_member(session, country="DE")
        sub = make_subscription(session, member=member, price=cheap, mrr_minor=1000, status="active",
                                trial_start=ended - timedelta(days=14), trial_end=ended)
        if own_price:
            make_change(session, subscription=sub, effective_at=ended - timedelta(days=14), mrr_after=0,
                        kind="trial_started", to_status="trialing", to_price=cheap)
        subs.append(sub)
    session.commit()
    refresh(engine, now=NOW - timedelta(days=1))
    for sub in subs:  # both move to the yearly price today
        make_change(session, subscription=sub, effective_at=NOW - timedelta(hours=3), mrr_before=1000,
                    mrr_after=250, kind="upgraded", to_price=dear)
        sub.price_id = dear.id
    session.commit()
    refresh(engine, NOW - timedelta(hours=4), now=NOW)
    incremental = _rows(engine)
    refresh(engine, now=NOW)
    assert _rows(engine) == incremental


def _snapshot_rates(engine, raw: bool = False) -> list:
    """Trial conversion and members lost by reason for the last months, ``now`` in mid-day."""
    q = Query.make(engine, start=date(2026, 4, 1), end=date(2026, 7, 1), now=NOW - timedelta(hours=7))
    out = []
    with raw_rows() if raw else nullcontext():
        for slug in ("trial_conversion", "cancellations"):
            r = compute(engine, slug, q)
            series = [None if pd.isna(v) else v for v in r.series["value"]]
            out.append((slug, r.value, series, r.breakdown.to_dict(orient="records")))
    return out


def test_migration_0011_fills_the_monthly_sums_from_the_daily_rows(engine, session):
    """Built rollups stay usable across migration 0011: it sums the daily rows into the new
    monthly tables itself, so a database migrated with rollups in place needs no rebuild."""
    from alembic import command

    from core.db.migrate import alembic_config, upgrade

    build_random_world(session, 31)
    refresh(engine, now=NOW)
    built = _rows(engine)
    assert built["metrics_monthly_trials"] and built["metrics_monthly_cancellations"]
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0010")
            # Later migrations mark the rollups for a rebuild on their way down; 0011 is the one tested.
            conn.execute(text("DELETE FROM metrics_rollup_state WHERE key = 'stale'"))
            command.upgrade(cfg, "0011")
        assert state(engine) is not None  # still built: nothing to rebuild
        assert {t: _rows(engine)[t] for t in built if "trials" in t or "cancellations" in t} == {
            t: v for t, v in built.items() if "trials" in t or "cancellations" in t}
    finally:
        upgrade(engine)
    refresh(engine, now=NOW)
    assert _snapshot_rates(engine) == _snapshot_rates(engine, raw=True)


def test_a_pause_is_its_own_reason_and_unpaid_is_involuntary(engine, session):
    """Members lost by reason: a pause is listed as one (it was listed under the subscription's later
    cancellation reason, as voluntary "Payment failed"), and a change to ``unpaid`` is involuntary,
    as in the segments. A database whose rollups were built under the older rules gets them at the
    next refresh, however short."""
    price = make_price(session, tier=make_tier(session, code="gold", rank=3), unit_amount=1500)
    paused = make_subscription(session, member=make_member(session, country="DE"), price=price,
                               cancellation_reason="payment_failed")  # a later cancellation's reason
    unpaid = make_subscription(session, member=make_member(session, country="FR"), price=price, status="unpaid")
    for sub in (paused, unpaid):
        make_change(session, subscription=sub, effective_at=at("2026-03-01 00:00"), mrr_after=1500, kind="created")
    make_change(session, subscription=paused, effective_at=at("2026-05-10 08:00"), mrr_before=1500, mrr_after=0,
                kind="paused", to_status="active")
    make_change(session, subscription=unpaid, effective_at=at("2026-05-11 08:00"), mrr_before=1500, mrr_after=0,
                kind="status_changed", from_status="past_due", to_status="unpaid")
    session.commit()
    refresh(engine, now=NOW)
    with engine.connect() as conn:
        lost = sorted(conn.execute(text("SELECT reason, churn_kind, SUM(changes) FROM metrics_monthly_cancellations "
                                        "GROUP BY reason, churn_kind")).all())
        involuntary = conn.execute(text("SELECT COUNT(*) FROM metrics_mrr_segments WHERE churn_kind = 'involuntary'")).scalar()
    assert lost == [("paused", "voluntary", 1), ("payment_failed", "involuntary", 1)]
    assert involuntary == 1
    rebuilt = _rows(engine)

    # The same rows as the older rules wrote them, and a state that says so.
    with engine.begin() as conn:
        for table in ("metrics_daily_cancellations", "metrics_monthly_cancellations"):
            conn.execute(text(f"UPDATE {table} SET reason = 'payment_failed' WHERE reason = 'paused'"))
            conn.execute(text(f"UPDATE {table} SET churn_kind = 'voluntary'"))
        built = conn.execute(text("SELECT value FROM metrics_rollup_state WHERE key = 'built'")).scalar()
        built = json.loads(built) if isinstance(built, str) else built
        built.pop("churn_rules")
        conn.execute(text("UPDATE metrics_rollup_state SET value = :v WHERE key = 'built'"), {"v": json.dumps(built)})
    assert _rows(engine) != rebuilt
    refresh(engine, NOW - timedelta(hours=1), now=NOW)
    assert _rows(engine) == rebuilt
    assert state(engine).churn_rules == 2


def test_a_cohort_cell_drills_to_that_cohort_s_members(engine, session):
    """A click on a cohort cell listed every member paying at the end of that calendar month, from
    every cohort: its rows are now the cohort's own, as many as the cell counts."""
    from core.metrics import drill

    build_random_world(session, 17, members=60)
    session.commit()
    refresh(engine, now=NOW)
    q = Query.make(engine, start=date(2025, 5, 1), end=date(2026, 7, 1), now=NOW, granularity="month")
    cells = compute(engine, "cohort_retention", q).breakdown
    assert len(cells) > 5
    checked = 0
    for cell in cells.to_dict(orient="records"):
        cohort, month = pd.Timestamp(cell["cohort"]).date(), pd.Timestamp(cell["month"]).date()
        rows = drill(engine, "cohort_retention", q, period=month, key=cohort.isoformat(), limit=None)
        assert len(rows) == cell["value"], (cohort, month)
        everyone = drill(engine, "cohort_retention", q, period=month, limit=None)
        checked += len(everyone) > len(rows)
    assert checked  # some months hold more than one cohort: the cells differ from the month's list


def test_a_reason_s_bar_drills_to_the_changes_it_counts(engine, session):
    """"Members lost, by reason": every bar drilled to "0 row(s)" (its reason was looked for among
    the movement kinds). Each reason now lists as many changes as its bar counts, under filters too."""
    from core.metrics import drill

    build_random_world(session, 23, members=80)
    session.commit()
    refresh(engine, now=NOW)
    for filters in ({}, {"currency": "EUR"}):
        q = Query.make(engine, start=date(2025, 5, 1), end=date(2026, 7, 1), now=NOW, granularity="month", **filters)
        bars = compute(engine, "cancellations", q).breakdown
        per_reason: dict[str, int] = {}
        for bar in bars.to_dict(orient="records"):
            per_reason[bar["key"]] = per_reason.get(bar["key"], 0) + int(bar["value"])
        assert per_reason and sum(per_reason.values()) > 3, filters
        for reason, counted in per_reason.items():
            rows = drill(engine, "cancellations", q, key=reason, limit=None)
            assert len(rows) == counted and set(rows["reason"]) == {reason}, (filters, reason)
    # The figure (no bar): the members lost, as before.
    assert len(drill(engine, "cancellations", q, limit=None)) > 0
