"""Properties on seeded random worlds: the movement identity every month, rates in [0, 1],
per-currency figures converted and summed equal the reporting figure, rollup answers equal raw
answers and an independent computation from the rows, an incremental refresh equals a full
rebuild, and the command line prints the registry's numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import nullcontext
from datetime import date, timedelta

import pandas as pd
import pytest
from sqlalchemy import text

from cli import main as cli_main
from cli.metrics import export
from core.metrics import Query, compute, get, list_metrics, page_bundle
from core.metrics.fx import RateTable
from core.metrics.rollups import refresh
from core.metrics.source import movements, raw_rows
from core.models import MembershipChange
from core.permissions import Actor
from core.settings import business as business_settings
from tests.support.db import rollup_snapshot
from tests.support.factories import (
    at,
    make_change,
)
from tests.support.worlds import RANDOM_CURRENCIES, RANDOM_NOW, build_random_world

NOW = RANDOM_NOW
START, END = date(2025, 7, 1), date(2026, 7, 1)


@pytest.fixture(params=[11])
def world(request, session):
    build_random_world(session, request.param)
    return request.param


def query(engine, granularity="month", currency="reporting", **kw) -> Query:
    return Query.make(engine, start=kw.pop("start", START), end=kw.pop("end", END), now=NOW,
                      granularity=granularity, currency=currency, **kw)


class TestIdentity:
    @pytest.mark.parametrize(("seed", "granularity"), [(12, "month"), (13, "week")])
    def test_movements_add_up_every_period(self, engine, session, seed, granularity):
        build_random_world(session, seed, members=40)
        refresh(engine, now=NOW)
        for path in (nullcontext(), raw_rows()):
            with path:
                mv = pd.DataFrame(movements(engine, query(engine, granularity)))
            assert not mv.empty
            lhs = mv["mrr_end"]
            rhs = mv["mrr_start"] + mv["new"] + mv["reactivation"] + mv["expansion"] - mv["contraction"] - mv["churn"]
            assert (lhs == rhs).all()
            assert (mv["churn"] == mv["churn_voluntary"] + mv["churn_involuntary"]).all()

    def test_identity_in_the_reporting_currency(self, engine, world):
        refresh(engine, now=NOW)
        wf = compute(engine, "mrr_movements", query(engine, currency="EUR", start=date(2026, 3, 1),
                                                    end=date(2026, 4, 1)))
        steps = dict(zip(wf.breakdown["key"], wf.breakdown["value"], strict=True))
        assert steps["end"] == (steps["start"] + steps["new"] + steps["reactivation"] + steps["expansion"]
                                - steps["contraction"] - steps["churn"])

    def test_month_end_mrr_matches_the_change_rows(self, engine, session, world):
        """Independent: MRR of a subscription at t = mrr_after of its last change at or before t."""
        refresh(engine, now=NOW)
        changes = session.query(MembershipChange).order_by(MembershipChange.effective_at, MembershipChange.id).all()
        r = compute(engine, "mrr", query(engine, currency=None))
        for period, cur, value in zip(r.series["period"], r.series["currency"], r.series["value"], strict=True):
            end = min(at(f"{_next_month(period)} 00:00"), NOW)
            last: dict[int, int] = {}
            for c in changes:
                if c.effective_at <= end and c.currency == cur:
                    last[c.subscription_id] = c.mrr_after_minor
            assert value == sum(last.values()), (period, cur)


def _next_month(d: date) -> str:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1).isoformat()


class TestRates:
    def test_rates_stay_between_zero_and_one(self, engine, world):
        refresh(engine, now=NOW)
        q = query(engine)
        for slug in ("member_churn_rate", "voluntary_churn_rate", "involuntary_churn_rate", "gross_mrr_churn", "grr",
                     "failure_rate", "recovery_rate", "trial_conversion", "cohort_retention"):
            r = compute(engine, slug, q)
            values = [v for v in [r.value, *r.series["value"]] if v is not None and not pd.isna(v)]
            assert all(0 <= v <= 1 for v in values), slug
        cohort = compute(engine, "cohort_retention", q).breakdown
        assert ((cohort["share"] >= 0) & (cohort["share"] <= 1)).all()
        assert compute(engine, "nrr", q).value >= 0


class TestCurrencies:
    @pytest.mark.parametrize("slug", ["gross_revenue", "refunds", "net_revenue", "mrr", "mrr_new", "mrr_churn"])
    def test_converted_per_currency_sums_to_reporting(self, engine, world, slug):
        refresh(engine, now=NOW)
        rates = RateTable.load(engine)
        per = compute(engine, slug, query(engine, currency=None))
        for target in ("EUR", "JPY"):
            rep = compute(engine, slug, query(engine, currency=target))
            expected: dict[date, int] = {}
            for period, cur, value in zip(per.series["period"], per.series["currency"], per.series["value"],
                                          strict=True):
                expected[period] = expected.get(period, 0) + rates.convert(int(value), cur, target, period)
            got = dict(zip(rep.series["period"], rep.series["value"], strict=True))
            if slug in ("mrr_new", "mrr_churn"):  # running-total conversion: within a minor unit per currency
                assert all(abs(got[p] - v) <= len(RANDOM_CURRENCIES) for p, v in expected.items()), slug
            elif slug == "mrr":  # each segment converted, then added: within half a minor unit per segment
                segments: dict[date, int] = {}
                for row in movements(engine, query(engine, currency=None), segments=True):
                    segments[row["period"]] = segments.get(row["period"], 0) + 1
                assert all(abs(got[p] - v) <= segments.get(p, 0) for p, v in expected.items()), (slug, target)
            else:  # flows convert each daily row and add: within half a minor unit per row of the month
                rows = _cash_rows_per_month(engine)
                assert all(abs(got[p] - v) <= rows.get(p, 0) for p, v in expected.items()), (slug, target)


def _cash_rows_per_month(engine) -> dict[date, int]:
    """Payments, refunds and disputes per UTC month: a bound on the daily rows a month converts."""
    out: dict[date, int] = {}
    with engine.connect() as conn:
        for table in ("payments", "refunds", "disputes"):
            for (t,) in conn.execute(text(f"SELECT created_at FROM {table}")):
                m = pd.Timestamp(t).date().replace(day=1)
                out[m] = out.get(m, 0) + 1
    return out


class TestRollupsEqualRawRows:
    @pytest.mark.parametrize(("granularity", "start", "end"), [
        ("month", date(2026, 1, 1), END), ("week", date(2026, 1, 1), END),
        # A range cut mid-month at both ends (month buckets widen it to whole months).
        ("month", date(2026, 1, 15), date(2026, 6, 10))])
    def test_every_metric(self, engine, world, granularity, start, end):
        refresh(engine, now=NOW)
        q = query(engine, granularity, start=start, end=end)
        for slug, table in page_bundle(engine, "revenue", q).tables.items():
            with raw_rows():
                raw_table = page_bundle(engine, "revenue", q).tables[slug]
            pd.testing.assert_frame_equal(table, raw_table, check_dtype=False, obj=slug)
        for m in list_metrics():
            rolled = m.compute(engine, q)
            with raw_rows():
                raw = m.compute(engine, q)
            assert rolled.value == raw.value, m.slug
            pd.testing.assert_frame_equal(rolled.series.reset_index(drop=True), raw.series.reset_index(drop=True),
                                          check_dtype=False, obj=m.slug)

    def test_filters_match_raw(self, engine, world):
        refresh(engine, now=NOW)
        for kw in ({"tier": f"t{world}b"}, {"interval": "year"}, {"country": "DE"}):
            q = query(engine, start=date(2026, 1, 1), **kw)
            for slug in ("mrr", "mrr_churn", "gross_revenue", "failure_rate", "decline_codes"):
                with raw_rows():
                    raw = compute(engine, slug, q)
                assert compute(engine, slug, q).value == raw.value, (slug, kw)

    def test_gross_revenue_equals_a_plain_sum_of_rows(self, engine, world):
        refresh(engine, now=NOW)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT currency, SUM(amount) FROM payments WHERE status = 'succeeded' "
                                     "GROUP BY currency")).all()
        r = compute(engine, "gross_revenue", query(engine, currency=None, start=date(2025, 1, 1)))
        assert r.by_currency == {cur: int(total) for cur, total in rows}

    def test_incremental_refresh_equals_full_rebuild(self, engine, session):
        build_random_world(session, 21)
        refresh(engine, now=at("2026-04-01 00:00"))
        build_random_world(session, 22, members=10, after=at("2026-04-01 00:00"))
        refresh(engine, at("2026-04-01 00:00"), now=NOW)
        incremental = rollup_snapshot(engine)
        refresh(engine, now=NOW)
        assert rollup_snapshot(engine) == incremental

    def test_incremental_refresh_within_the_built_periods_equals_full_rebuild(self, engine, session):
        # Same periods as the last build: only the touched members are swept again (a delta).
        build_random_world(session, 23)
        refresh(engine, now=NOW)
        since = NOW - timedelta(days=20)
        build_random_world(session, 24, members=8, after=since)
        subs = session.query(MembershipChange.subscription_id).filter(
            MembershipChange.effective_at < since - timedelta(days=60)).distinct().limit(3).all()
        from core.models import Subscription
        for (sid,) in subs:  # existing members change too: one upgrade, one churn, one recorded late
            sub = session.get(Subscription, sid)
            make_change(session, subscription=sub, effective_at=NOW - timedelta(days=5), mrr_after=0,
                        kind="canceled", to_status="canceled")
        if subs:
            make_change(session, subscription=session.get(Subscription, subs[0][0]),
                        effective_at=since - timedelta(days=40), mrr_after=12345, kind="upgraded",
                        recorded_at=NOW - timedelta(days=1))
        session.commit()
        refresh(engine, since, now=NOW)
        incremental = rollup_snapshot(engine)
        refresh(engine, now=NOW)
        assert rollup_snapshot(engine) == incremental


class TestGraceDaysSetting:
    def test_changing_grace_days_changes_every_number_at_once(self, engine, session, world):
        refresh(engine, now=NOW)
        before = compute(engine, "mrr", query(engine)).value
        business_settings.save(engine, actor=Actor.of("admin", "admin"), past_due_grace_days=0)
        session.commit()
        after = compute(engine, "mrr", query(engine))
        assert after.settings_used["past_due_grace_days"] == 0
        with raw_rows():
            assert compute(engine, "mrr", query(engine)).value == after.value
        assert after.value <= before


class TestCommandLine:
    def test_json_export_equals_registry(self, engine, settings, world, monkeypatch, capsys):
        refresh(engine, now=NOW)
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
        monkeypatch.setenv("MEMBERDESK_ENCRYPTION_KEYS", settings.encryption_keys[0])
        args = ["metrics", "--from", "2026-01-01", "--to", "2026-07-01", "--tz", "Europe/Berlin", "--currency", "EUR",
                "--granularity", "month", "--format", "json", "--now", NOW.isoformat()]
        assert cli_main(args) == 0
        printed = json.loads(capsys.readouterr().out)
        q = Query.make(engine, start=date(2026, 1, 1), end=date(2026, 7, 1), now=NOW, tz="Europe/Berlin",
                       currency="EUR")
        expected = [json.loads(json.dumps(export(m, m.compute(engine, q)), default=str)) for m in list_metrics()]
        assert [m["slug"] for m in printed["metrics"]] == [m["slug"] for m in expected]
        for got, want in zip(printed["metrics"], expected, strict=True):
            assert got["value"] == want["value"], got["slug"]
            assert [r["value"] for r in got["series"]] == [r["value"] for r in want["series"]], got["slug"]

    def test_export_never_imports_pandas(self, engine, settings, world):
        """The export as finance runs it (a new process): importing pandas alone would spend a fifth
        to half of its two-second budget, so results stay plain columns on this path."""
        refresh(engine, now=NOW)
        env = {**os.environ, "DATABASE_URL": settings.database_url,
               "MEMBERDESK_ENCRYPTION_KEYS": settings.encryption_keys[0]}
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli", "metrics", "--from", "2026-01-01",
                               "--to", "2026-07-01", "--format", "csv", "--now", NOW.isoformat()],
                              env=env, capture_output=True, text=True, check=False, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith("metric,unit,period,currency,value\nmrr,money,total,USD,")
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "import time:" in line}
        assert "pandas" not in imported

    def test_csv_and_drill(self, engine, settings, world, monkeypatch, capsys):
        refresh(engine, now=NOW)
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
        monkeypatch.setenv("MEMBERDESK_ENCRYPTION_KEYS", settings.encryption_keys[0])
        base = ["metrics", "--from", "2026-01-01", "--to", "2026-07-01", "--now", NOW.isoformat(), "--format", "csv"]
        assert cli_main([*base, "--metric", "gross_revenue"]) == 0
        lines = capsys.readouterr().out.splitlines()
        q = Query.make(engine, start=date(2026, 1, 1), end=date(2026, 7, 1), now=NOW)
        assert lines[1] == f"gross_revenue,money,total,USD,{get('gross_revenue').compute(engine, q).value}"
        assert cli_main([*base, "--drill", "mrr_churn"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("period,member_id,email,currency")
        assert cli_main([*base, "--metric", "nope"]) == 2
        assert "not a metric" in capsys.readouterr().err
