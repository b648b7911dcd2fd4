"""Numbers that hold under every view, on seeded random worlds, against a computation written here
from the world's own record (what the builder wrote, not the product's tables or code):

- the figures of a range are the same whatever the bucket size (buckets cut to the range);
- in a reporting currency, segments (tier, interval, currency, country) add up to the total to
  the minor unit for revenue and for MRR, ARR and paying members (ARPU is their quotient), a
  filtered figure equals its segment, and the Overview and the command line agree to the cent
  (flows: each segment's monthly running total converted; stocks: each segment's MRR);
- NRR and GRR under a tier, interval or country filter lose the members who move out;
- a card's previous period is the same part of the previous one, cut at the same minute;
- MRR end = MRR start + new + reactivation + expansion - contraction - churn + transfer in -
  transfer out in every period of every segment, transfers are the members who moved, and an
  exchange-rate step is only revaluation;
- LTV of each bucket uses the churn of the 6 months before that bucket;
- payments stay filed under the price and country they were billed at, and trials under those
  they ended under, so an incremental refresh after price changes and moves equals a full
  rebuild.

The record: every membership change as (time, MRR, tier, interval, country then), every cash
event as (time, measure, currency, amount, tier, interval, country it was billed under), and
the exchange rates. The rules applied to it are the written definitions (docs/metrics.md).
Ranges, granularities and filters are drawn by hypothesis with a fixed seed (derandomize);
``now`` is pinned and no date depends on today.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from cli import main as cli_main
from core.metrics import Filters, Query, compute, drill, page_bundle
from core.metrics.bundles import revenue_tables
from core.metrics.rollups import refresh
from core.metrics.source import movements
from core.models import FxRate, InvoiceLine
from tests.support.db import FLOW_TABLES, rollup_snapshot
from tests.support.factories import (
    make_change,
    make_dispute,
    make_invoice,
    make_member,
    make_payment,
    make_price,
    make_refund,
    make_subscription,
    make_tier,
)

NOW = datetime(2026, 9, 14, 15, 30, tzinfo=UTC)  # mid-day, mid-month: partial buckets everywhere
SPLIT = datetime(2026, 8, 19, 9, 0, tzinfo=UTC)  # the incremental refresh's `since`
WORLD_START = datetime(2025, 2, 3, tzinfo=UTC)
DECIMALS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}
MONTHLY = {"USD": 1000, "EUR": 900, "GBP": 800, "JPY": 1500}
BASE_RATE = {"EUR": Decimal("1.08"), "GBP": Decimal("1.27"), "JPY": Decimal("0.0068")}
COUNTRIES = ("US", "CA", "DE", "FR", "GB", "IE", "JP")
HOME = {"USD": ("US", "CA"), "EUR": ("DE", "FR"), "GBP": ("GB", "IE"), "JPY": ("JP",)}
TIERS = ("basic", "premium", "platinum")
CASH = ("gross", "refunds", "disputes_lost", "billed")
SLUG = {"gross": "gross_revenue", "refunds": "refunds", "disputes_lost": "disputes_lost", "billed": "billed"}
MOVES = ("mrr_start", "mrr_end", "new", "reactivation", "expansion", "contraction", "churn", "transfer_in",
         "transfer_out")
HYP = settings(max_examples=12, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ------------------------------------------------------------------------------ the world

@dataclass
class Life:
    """One member's subscription as the builder left it."""

    member: object
    sub: object
    currency: str
    country: str
    tier: int
    interval: str
    mrr: int
    active: bool
    t: datetime


@dataclass
class World:
    rates: dict[tuple[str, date], Decimal] = field(default_factory=dict)
    # member id -> [(time, mrr, tier code, interval, country)] after each membership change
    states: dict[int, list[tuple[datetime, int, str, str, str]]] = field(default_factory=dict)
    currency: dict[int, str] = field(default_factory=dict)
    # (time, measure, currency, amount, tier code, interval, country)
    cash: list[tuple[datetime, str, str, int, str, str, str]] = field(default_factory=list)
    lives: list[Life] = field(default_factory=list)
    prices: dict = field(default_factory=dict)


def _mrr_of(currency: str, tier: int, interval: str) -> int:
    monthly = MONTHLY[currency] * (tier + 1)
    return monthly if interval == "month" else (monthly * 10) // 12  # yearly: two months free


def build(session, seed: int, members: int = 28) -> World:
    rng = random.Random(seed)
    w = World()
    session.execute(text("DELETE FROM fx_rates"))  # the seeded yearly defaults: every month gets its own rate
    month = date(2024, 1, 1)
    while month < date(2028, 1, 1):
        for cur, base in BASE_RATE.items():
            rate = (base * Decimal(1 + rng.uniform(-0.08, 0.08))).quantize(Decimal("0.000001"))
            w.rates[(cur, month)] = rate
            session.add(FxRate(currency=cur, month=month, usd_per_unit=rate))
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    tiers = [make_tier(session, code=f"{code}{seed}", rank=i + 1) for i, code in enumerate(TIERS)]
    for cur in MONTHLY:
        for k, tier in enumerate(tiers):
            for iv in ("month", "year"):
                unit = MONTHLY[cur] * (k + 1) * (10 if iv == "year" else 1)
                w.prices[(cur, k, iv)] = make_price(session, tier=tier, currency=cur, unit_amount=unit, interval=iv)
    for _ in range(members):
        cur = rng.choice(list(MONTHLY))
        country = rng.choice(HOME[cur])
        member = make_member(session, country=country)
        k, iv = rng.randint(0, 2), rng.choice(["month", "month", "year"])
        price = w.prices[(cur, k, iv)]
        sub = make_subscription(session, member=member, price=price, mrr_minor=_mrr_of(cur, k, iv))
        t = WORLD_START + timedelta(seconds=rng.random() * 200 * 86400)
        life = Life(member, sub, cur, country, k, iv, _mrr_of(cur, k, iv), True, t)
        w.currency[member.id] = cur
        w.states[member.id] = []
        make_change(session, subscription=sub, effective_at=t, mrr_after=life.mrr, kind="created", to_price=price)
        _state(w, life, seed)
        w.lives.append(life)
    advance(session, w, rng, SPLIT, seed)
    return w


def _code(k: int, seed: int) -> str:
    return f"{TIERS[k]}{seed}"


def _state(w: World, life: Life, seed: int) -> None:
    w.states[life.member.id].append((life.t, life.mrr if life.active else 0, _code(life.tier, seed),
                                     life.interval, life.country))


def advance(session, w: World, rng: random.Random, until: datetime, seed: int,
            moves: float = 1.0) -> None:
    """Every member's life from where it stands up to ``until`` (events strictly before it)."""
    for life in w.lives:
        while True:
            t = life.t + timedelta(days=rng.randint(4, 45), seconds=rng.randint(0, 86399))
            if t >= until:
                life.t = until  # the next stretch of life starts here: nothing is written back-dated
                break
            life.t = t
            event = rng.choice(["renew"] * 4 + ["upgrade", "downgrade", "interval", "move", "cancel", "return"])
            if event == "move" or (moves > 1 and rng.random() < moves - 1):
                # The member moves: rows written from now on carry the new country.
                life.country = rng.choice([c for c in COUNTRIES if c != life.country])
                life.member.country = life.country
                session.flush()
                if event == "move":
                    continue
            if event == "renew" and life.active:
                _renew(session, w, rng, life, until, seed)
            elif event in ("upgrade", "downgrade", "interval") and life.active:
                k, iv = life.tier, life.interval
                if event == "upgrade" and k < 2:
                    k += 1
                elif event == "downgrade" and k > 0:
                    k -= 1
                elif event == "interval":
                    iv = "year" if iv == "month" else "month"
                else:
                    continue
                price = w.prices[(life.currency, k, iv)]
                before = life.mrr
                life.tier, life.interval, life.mrr = k, iv, _mrr_of(life.currency, k, iv)
                life.sub.price_id, life.sub.tier_id = price.id, price.tier_id
                session.flush()
                make_change(session, subscription=life.sub, effective_at=t, mrr_before=before, mrr_after=life.mrr,
                            kind="upgraded" if life.mrr >= before else "downgraded", to_price=price)
                _state(w, life, seed)
            elif event == "cancel" and life.active:
                life.active = False
                make_change(session, subscription=life.sub, effective_at=t, mrr_before=life.mrr, mrr_after=0,
                            kind="canceled", to_status="canceled", churn_kind="voluntary")
                _state(w, life, seed)
            elif event == "return" and not life.active:
                life.active = True
                make_change(session, subscription=life.sub, effective_at=t, mrr_after=life.mrr, kind="reactivated",
                            from_status="canceled", to_status="active")
                _state(w, life, seed)
    session.commit()


def _renew(session, w: World, rng: random.Random, life: Life, until: datetime, seed: int) -> None:
    price = w.prices[(life.currency, life.tier, life.interval)]
    amount = price.unit_amount
    where = (_code(life.tier, seed), life.interval, life.country)
    inv = make_invoice(session, member=life.member, subscription=life.sub, amount=amount, currency=life.currency,
                       created_at=life.t, finalized_at=life.t)
    session.add(InvoiceLine(invoice_id=inv.id, price_id=price.id, amount=amount, currency=life.currency))
    w.cash.append((life.t, "billed", life.currency, amount, *where))
    ok = rng.random() < 0.8
    pay = make_payment(session, member=life.member, amount=amount, currency=life.currency, invoice_id=inv.id,
                       status="succeeded" if ok else "failed", is_renewal=True, attempt_number=1, created_at=life.t,
                       decline_code=None if ok else "insufficient_funds")
    if not ok:
        return
    w.cash.append((life.t, "gross", life.currency, amount, *where))
    later = life.t + timedelta(days=2, hours=rng.randint(0, 23))
    if rng.random() < 0.25 and later < until:
        part = rng.randint(1, amount)
        make_refund(session, payment=pay, amount=part, created_at=later)
        w.cash.append((later, "refunds", life.currency, part, *where))
    closed = life.t + timedelta(days=15, hours=rng.randint(0, 23))
    if rng.random() < 0.1 and closed < until:
        d = make_dispute(session, payment=pay, status="lost")
        d.closed_at = closed
        w.cash.append((closed, "disputes_lost", life.currency, amount, *where))


# ------------------------------------------------------------------- the independent rules

def _month(d: date) -> date:
    return d.replace(day=1)


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


def convert(w: World, amount: int, cur: str, target: str, month: date) -> int:
    """At the month's rate (USD per unit), half to even, in exact fractions."""
    if cur == target:
        return amount
    usd = {c: Fraction(1) if c == "USD" else Fraction(w.rates[(c, month)]) for c in (cur, target)}
    exact = Fraction(amount, 10 ** DECIMALS[cur]) * usd[cur] / usd[target] * 10 ** DECIMALS[target]
    return round(exact)  # round() of a Fraction is half to even


def matches(flt: dict[str, str], cur: str, tier: str, interval: str, country: str) -> bool:
    got = {"tier": tier, "interval": interval, "currency": cur, "country": country}
    return all(got[k] == v for k, v in flt.items())


def cash_rows(w: World, measure: str, start: date, end: date, tz: ZoneInfo, flt: dict[str, str],
              cut: datetime = NOW) -> dict[tuple, int]:
    """Sums per (local day, currency, tier, interval, country) of one measure inside the range,
    before ``cut``."""
    out: dict[tuple, int] = {}
    for t, m, cur, amount, tier, interval, country in w.cash:
        day = t.astimezone(tz).date()
        if m == measure and start <= day < end and t < cut and matches(flt, cur, tier, interval, country):
            key = (day, cur, tier, interval, country)
            out[key] = out.get(key, 0) + amount
    return out


def cash_figure(w: World, measure: str, start: date, end: date, tz: ZoneInfo, target: str,
                flt: dict[str, str], by: str | None = None, cut: datetime = NOW) -> dict[str | None, int]:
    """The rule: within each local month, each segment's running total converts at the month's
    rate; a day is the step of it (the days of the month before the range start the running
    total). Added per ``by`` key."""
    idx = {"currency": 1, "tier": 2, "interval": 3, "country": 4}
    rows = cash_rows(w, measure, _month(start), end, tz, flt, cut)
    running: dict[tuple, int] = {}
    out: dict[str | None, int] = {}
    for key in sorted(rows):
        seg = (_month(key[0]), *key[1:])
        was = running.get(seg, 0)
        running[seg] = was + rows[key]
        if key[0] < start:
            continue
        k = key[idx[by]] if by else None
        month = _month(key[0])
        out[k] = out.get(k, 0) + convert(w, running[seg], key[1], target, month) - convert(w, was, key[1], target,
                                                                                         month)
    return out


def mrr_segments(w: World, moment: datetime, flt: dict[str, str]) -> dict[tuple, tuple[int, int]]:
    """(MRR, paying members) per segment (currency, tier, interval, country) at ``moment``."""
    out: dict[tuple, tuple[int, int]] = {}
    for m, cur in w.currency.items():
        s = state_at(w, m, moment)
        if s is not None and matches(flt, cur, *s[1:]):
            mrr, members = out.get((cur, *s[1:]), (0, 0))
            out[(cur, *s[1:])] = (mrr + s[0], members + 1)
    return out


def converted_mrr(w: World, segments: dict[tuple, tuple[int, int]], target: str, month: date) -> int:
    """The stock rule: each segment's MRR converted at the month's rate, then added."""
    return sum(convert(w, v[0], seg[0], target, month) for seg, v in segments.items())


def state_at(w: World, member: int, moment: datetime) -> tuple[int, str, str, str] | None:
    """(MRR, tier, interval, country) in force at ``moment`` (a change at that instant counts)."""
    last = None
    for t, mrr, tier, interval, country in w.states[member]:
        if t <= moment:
            last = (mrr, tier, interval, country)
    return last if last and last[0] > 0 else None


def paid_before(w: World, member: int, moment: datetime) -> bool:
    return any(t < moment and mrr > 0 for t, mrr, *_ in w.states[member])


def period_movements(w: World, a: datetime, b: datetime, flt: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per currency, the movements of one period for the members of the filter's segment."""
    out: dict[str, dict[str, int]] = {}
    for m, cur in w.currency.items():
        s, e = state_at(w, m, a), state_at(w, m, b)
        if s is None and e is None:
            continue
        acc = out.setdefault(cur, dict.fromkeys(("start", "end", "new", "reactivation", "expansion", "contraction",
                                                 "churn", "transfer_in", "transfer_out"), 0))
        in_s = s is not None and matches(flt, cur, *s[1:])
        in_e = e is not None and matches(flt, cur, *e[1:])
        if in_s:
            acc["start"] += s[0]
        if in_e:
            acc["end"] += e[0]
        if s is None and in_e:
            acc["reactivation" if paid_before(w, m, a) else "new"] += e[0]
        elif e is None and in_s:
            acc["churn"] += s[0]
        elif s is not None and e is not None:
            moved = s[1:] != e[1:]
            if moved and in_s:
                acc["transfer_out"] += s[0]
            if moved and in_e:
                acc["transfer_in"] += s[0]
            if in_e and e[0] > s[0]:
                acc["expansion"] += e[0] - s[0]
            if in_e and e[0] < s[0]:
                acc["contraction"] += s[0] - e[0]
    return out


def boundaries(start: date, end: date, granularity: str, tz: ZoneInfo) -> list[tuple[date, datetime, datetime]]:
    """(label, start, end) of each bucket, cut to the range, written out here (Monday weeks)."""
    out = []
    d = start
    while d < end:
        if granularity == "day":
            nxt = d + timedelta(days=1)
        elif granularity == "week":
            nxt = d + timedelta(days=7 - d.weekday())
        else:
            nxt = date(d.year + d.month // 12, d.month % 12 + 1, 1)
        nxt = min(nxt, end)
        a = _midnight(d, tz)
        if a >= NOW:
            break
        out.append((d, a, _midnight(nxt, tz)))
        d = nxt
    return out


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(params=[4711, 90210])
def world(request, engine, session):
    w = build(session, request.param)
    advance(session, w, random.Random(request.param + 1), NOW, request.param)
    refresh(engine, now=NOW)
    w.seed = request.param
    return w


def ranges():
    """A range inside the world's life, ending at the latest on the day after ``now``."""
    last = NOW.date() + timedelta(days=1)
    return st.tuples(st.integers(0, 560), st.integers(1, 400)).map(
        lambda p: (last - timedelta(days=p[0] + p[1]), last - timedelta(days=p[0])))


def filters():
    return st.one_of(st.just({}), st.sampled_from(TIERS).map(lambda t: {"tier": t}),
                     st.sampled_from(["month", "year"]).map(lambda i: {"interval": i}),
                     st.sampled_from(list(MONTHLY)).map(lambda c: {"currency": c}),
                     st.sampled_from(COUNTRIES).map(lambda c: {"country": c}))


def q(engine, start: date, end: date, granularity: str, flt: dict[str, str], *, currency: str | None = "EUR",
      tz: str | None = None, seed: int = 0) -> Query:
    """The question, with a tier filter naming the world's tier (codes carry the world's seed)."""
    f = seeded(flt, seed)
    return Query.make(engine, start=start, end=end, now=NOW, granularity=granularity, currency=currency, tz=tz,
                      filters=Filters(tier=f.get("tier"), interval=f.get("interval"), currency=f.get("currency"),
                                      country=f.get("country")))


def seeded(flt: dict[str, str], seed: int) -> dict[str, str]:
    return {k: (f"{v}{seed}" if k == "tier" else v) for k, v in flt.items()}


# --------------------------------------------------------------------------------- tests

class TestRangesDoNotDependOnBuckets:
    @HYP
    @given(span=ranges(), flt=filters(), target=st.sampled_from(["EUR", "JPY", "USD"]),
           zone_name=st.sampled_from(["UTC", "UTC", "America/New_York", "Asia/Tokyo"]))
    def test_cash_figures_equal_the_record_at_every_granularity(self, engine, world, span, flt, target, zone_name):
        """In the business zone (rollups) and in others (raw rows): days and months are local."""
        start, end = span
        tz = ZoneInfo(zone_name)
        for measure in CASH:
            want = cash_figure(world, measure, start, end, tz, target, seeded(flt, world.seed)).get(None, 0)
            for gran in ("day", "week", "month"):
                r = compute(engine, SLUG[measure], q(engine, start, end, gran, flt, currency=target, seed=world.seed,
                                                     tz=zone_name))
                assert r.value == want, (measure, gran, span, flt)
                assert sum(r.series["value"]) == want, (measure, gran)  # the buckets add up to the range
                labels = list(r.series["period"])
                assert labels[0] == start and all(a < b for a, b in zip(labels, labels[1:], strict=False))
        nets = {g: compute(engine, "net_revenue", q(engine, start, end, g, flt, currency=target, seed=world.seed,
                                                     tz=zone_name)).value
                for g in ("day", "week", "month")}
        parts = {m: cash_figure(world, m, start, end, tz, target, seeded(flt, world.seed)).get(None, 0)
                 for m in ("gross", "refunds", "disputes_lost")}
        assert set(nets.values()) == {parts["gross"] - parts["refunds"] - parts["disputes_lost"]}

    @HYP
    @given(span=ranges(), flt=filters())
    def test_mrr_and_paying_members_at_the_range_end(self, engine, world, span, flt):
        start, end = span
        moment = min(_midnight(end, ZoneInfo("UTC")), NOW)
        month = _month(min(end - timedelta(days=1), NOW.date()))
        segments = mrr_segments(world, moment, seeded(flt, world.seed))
        paying = sum(v[1] for v in segments.values())
        want = converted_mrr(world, segments, "GBP", month)
        for gran in ("day", "week", "month"):
            query = q(engine, start, end, gran, flt, currency="GBP", seed=world.seed)
            assert compute(engine, "mrr", query).value == want, (gran, span, flt)
            assert compute(engine, "paying_members", query).value == paying, (gran, span, flt)

    def test_a_week_never_counts_days_outside_the_range(self, engine, world):
        """1 Jan - 30 Jun: the weeks at both ends stick out of the range; the figures must not."""
        start, end = date(2026, 1, 1), date(2026, 7, 1)
        values = {g: compute(engine, "net_revenue", q(engine, start, end, g, {}, seed=world.seed)).value
                  for g in ("day", "week", "month")}
        assert len(set(values.values())) == 1, values
        week = compute(engine, "gross_revenue", q(engine, start, end, "week", {}, seed=world.seed)).series
        assert week["period"].iloc[0] == start  # the first week starts with the range
        assert week["period_end"].iloc[-1] == _midnight(end, ZoneInfo("UTC"))


class TestSegmentsAddUp:
    @HYP
    @given(span=ranges(), target=st.sampled_from(["EUR", "JPY", "USD"]), gran=st.sampled_from(["day", "week", "month"]))
    def test_revenue_by_segment_sums_to_the_total_and_to_each_filtered_figure(self, engine, world, span, target, gran):
        start, end = span
        tz = ZoneInfo("UTC")
        query = q(engine, start, end, gran, {}, currency=target, seed=world.seed)
        tables = revenue_tables(engine, query)
        gross = compute(engine, "gross_revenue", query).value
        net = compute(engine, "net_revenue", query).value
        for dim in ("tier", "interval", "currency", "country"):
            table = tables[f"revenue_by_{dim}"]
            assert int(table["gross"].sum()) == gross, dim
            assert int(table["net"].sum()) == net, dim
            want = cash_figure(world, "gross", start, end, tz, target, {}, by=dim)
            got = dict(zip(table["key"], table["gross"], strict=True))
            for key, value in want.items():
                assert got.get(key) == value, (dim, key)
            for key in list(got)[:3]:  # a filtered figure is its segment
                flt = {dim: key[:-len(str(world.seed))] if dim == "tier" else key}
                one = compute(engine, "gross_revenue", q(engine, start, end, gran, flt, currency=target,
                                                          seed=world.seed))
                assert one.value == got[key], (dim, key)

    def test_overview_month_to_date_equals_the_command_line(self, engine, settings, world, monkeypatch, capsys):
        start, end = date(2026, 9, 1), date(2026, 9, 15)
        bundle = page_bundle(engine, "overview", q(engine, start, end, "day", {}, currency="USD"))
        card = next(k for k in bundle.kpis if k.slug == "net_revenue")
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
        monkeypatch.setenv("MEMBERDESK_ENCRYPTION_KEYS", settings.encryption_keys[0])
        assert cli_main(["metrics", "--from", "2026-09-01", "--to", "2026-09-15", "--currency", "USD",
                         "--granularity", "month", "--format", "json", "--metric", "net_revenue",
                         "--now", NOW.isoformat()]) == 0
        printed = json.loads(capsys.readouterr().out)
        value = next(m["value"] for m in printed["metrics"] if m["slug"] == "net_revenue")
        parts = {m: cash_figure(world, m, start, end, ZoneInfo("UTC"), "USD", {}).get(None, 0)
                 for m in ("gross", "refunds", "disputes_lost")}
        assert card.value == value == parts["gross"] - parts["refunds"] - parts["disputes_lost"]


class TestStocksAddUp:
    @HYP
    @given(span=ranges(), target=st.sampled_from(["EUR", "JPY", "USD"]), gran=st.sampled_from(["day", "week", "month"]),
           dim=st.sampled_from(["tier", "interval", "country", "currency"]))
    def test_mrr_arr_arpu_by_segment_sum_to_the_total(self, engine, world, span, target, gran, dim):
        """Each segment's MRR converts on its own: the filtered MRRs and ARRs of a dimension add up
        to the total to the minor unit, and ARPU is the total over the members of the segments."""
        start, end = span
        moment = min(_midnight(end, ZoneInfo("UTC")), NOW)
        month = _month(min(end - timedelta(days=1), NOW.date()))
        everyone = mrr_segments(world, moment, {})
        keys = sorted({seg[{"currency": 0, "tier": 1, "interval": 2, "country": 3}[dim]] for seg in everyone})
        total = {slug: compute(engine, slug, q(engine, start, end, gran, {}, currency=target, seed=world.seed)).value
                 for slug in ("mrr", "arr", "arpu", "paying_members")}
        want = converted_mrr(world, everyone, target, month)
        assert total["mrr"] == want and total["arr"] == 12 * want
        members = sum(v[1] for v in everyone.values())
        assert total["arpu"] == (round(Fraction(want, members)) if members else None)
        parts = {"mrr": 0, "arr": 0, "paying_members": 0}
        for key in keys:
            flt = {dim: key[:-len(str(world.seed))] if dim == "tier" else key}
            one = q(engine, start, end, gran, flt, currency=target, seed=world.seed)
            for slug in parts:
                parts[slug] += compute(engine, slug, one).value or 0
            seg_want = converted_mrr(world, mrr_segments(world, moment, seeded(flt, world.seed)), target, month)
            assert compute(engine, "mrr", one).value == seg_want, (dim, key)
        assert parts == {"mrr": total["mrr"], "arr": total["arr"], "paying_members": total["paying_members"]}


class TestCardsCompareLikeWithLike:
    @pytest.mark.parametrize(("start", "prev_start", "cut"), [
        (date(2026, 9, 1), date(2026, 8, 1), datetime(2026, 8, 14, 15, 30, tzinfo=UTC)),  # month to date
        (date(2026, 1, 1), date(2025, 1, 1), datetime(2025, 9, 14, 15, 30, tzinfo=UTC)),  # year to date
        (date(2026, 8, 16), date(2026, 7, 17), datetime(2026, 8, 15, 15, 30, tzinfo=UTC))])  # last 30 days
    def test_a_partial_period_against_the_same_part_of_the_previous(self, engine, world, start, prev_start, cut):
        """Asked on the 14th at 15:30, month to date compares with the 1st to the 14th at 15:30 of
        last month (not with whole days or a whole month the current period has not had)."""
        end = date(2026, 9, 15)
        bundle = page_bundle(engine, "overview", q(engine, start, end, "day", {}, currency="USD"))
        cards = {k.slug: k for k in bundle.kpis}
        tz = ZoneInfo("UTC")
        prev_end = cut.date() + timedelta(days=1)
        parts = {m: cash_figure(world, m, prev_start, prev_end, tz, "USD", {}, cut=cut).get(None, 0)
                 for m in ("gross", "refunds", "disputes_lost")}
        assert cards["net_revenue"].previous == parts["gross"] - parts["refunds"] - parts["disputes_lost"]
        now_parts = {m: cash_figure(world, m, start, end, tz, "USD", {}).get(None, 0)
                     for m in ("gross", "refunds", "disputes_lost")}
        assert cards["net_revenue"].value == now_parts["gross"] - now_parts["refunds"] - now_parts["disputes_lost"]
        segments = mrr_segments(world, cut, {})
        assert cards["mrr"].previous == converted_mrr(world, segments, "USD", _month(cut.date()))
        assert cards["paying_members"].previous == sum(v[1] for v in segments.values())
        assert cards["mrr"].compared == f"vs {prev_start:%Y-%m-%d} – {cut:%Y-%m-%d %H:%M}"


class TestMovementsCloseInEverySegment:
    @HYP
    @given(span=ranges(), flt=filters(), gran=st.sampled_from(["week", "month", "day"]))
    def test_identity_and_the_record_in_every_period(self, engine, world, span, flt, gran):
        start, end = span
        if gran == "day":
            start = max(start, end - timedelta(days=40))
        tz = ZoneInfo("UTC")
        rows = movements(engine, q(engine, start, end, gran, flt, currency=None, seed=world.seed), segments=True)
        got: dict[tuple, dict] = {}
        for r in rows:  # one row per segment: each closes the identity, and so does their sum
            assert r["mrr_end"] == (r["mrr_start"] + r["new"] + r["reactivation"] + r["expansion"] - r["contraction"]
                                    - r["churn"] + r["transfer_in"] - r["transfer_out"])
            acc = got.setdefault((r["period"], r["currency"]), dict.fromkeys(MOVES, 0))
            for k in MOVES:
                acc[k] += r[k]
        previous: dict[str, int] = {}
        for label, a, b in boundaries(start, end, gran, tz):
            want = period_movements(world, a, min(b, NOW), seeded(flt, world.seed))
            for cur in sorted(set(want) | {c for p, c in got if p == label}):
                r = got.get((label, cur))
                w = want.get(cur)
                values = {k: r[k] if r else 0 for k in ("mrr_start", "mrr_end", "new", "reactivation", "expansion",
                                                         "contraction", "churn", "transfer_in", "transfer_out")}
                assert values["mrr_end"] == (values["mrr_start"] + values["new"] + values["reactivation"]
                                             + values["expansion"] - values["contraction"] - values["churn"]
                                             + values["transfer_in"] - values["transfer_out"]), (label, cur)
                if cur in previous:
                    assert values["mrr_start"] == previous[cur], (label, cur)  # periods chain
                previous[cur] = values["mrr_end"]
                expected = {"mrr_start": w["start"], "mrr_end": w["end"], **{k: w[k] for k in (
                    "new", "reactivation", "expansion", "contraction", "churn", "transfer_in", "transfer_out")}} \
                    if w else dict.fromkeys(values, 0)
                assert values == expected, (label, cur, flt, gran)

    @pytest.mark.parametrize("flt", [{"tier": "premium"}, {"interval": "year"}, {"country": "DE"}, {}])
    def test_fx_step_is_only_revaluation(self, engine, world, flt):
        start, end = date(2025, 9, 1), date(2026, 9, 1)
        query = q(engine, start, end, "month", flt, currency="USD", seed=world.seed)
        steps = dict(zip(compute(engine, "mrr_movements", query).breakdown["key"],
                         compute(engine, "mrr_movements", query).breakdown["value"], strict=True))
        tz = ZoneInfo("UTC")
        # A month's end converts at its rate, the next month's start (the same MRR) at the next
        # month's: the difference, and nothing else, is the exchange-rate step.
        reval = 0
        months = boundaries(start, end, "month", tz)
        for (label, _, b), (nxt, _, _) in zip(months, months[1:], strict=False):
            for seg, (mrr, _) in mrr_segments(world, b, seeded(flt, world.seed)).items():
                reval += convert(world, mrr, seg[0], "USD", nxt) - convert(world, mrr, seg[0], "USD", label)
        assert steps.get("fx", 0) == reval, steps
        kinds = ("new", "reactivation", "expansion", "contraction", "churn", "transfer_in", "transfer_out")
        net = sum(steps.get(k, 0) * (-1 if k in ("contraction", "churn", "transfer_out") else 1) for k in kinds)
        assert steps["end"] == steps["start"] + net + steps.get("rounding", 0) + steps.get("fx", 0)
        if flt:
            assert "rounding" not in steps  # transfers are steps of their own under a filter

    def test_a_member_changing_tier_is_a_transfer_drillable_from_both_sides(self, engine, world):
        start, end = date(2025, 6, 1), date(2026, 9, 1)
        tz = ZoneInfo("UTC")
        for tier in TIERS:
            flt = {"tier": tier}
            query = q(engine, start, end, "month", flt, currency=None, seed=world.seed)
            want_in = want_out = 0
            for _, a, b in boundaries(start, end, "month", tz):
                for v in period_movements(world, a, b, seeded(flt, world.seed)).values():
                    want_in += v["transfer_in"]
                    want_out += v["transfer_out"]
            tin = compute(engine, "mrr_transfer_in", query)
            tout = compute(engine, "mrr_transfer_out", query)
            assert sum(tin.by_currency.values()) == want_in and sum(tout.by_currency.values()) == want_out
            rows_in = drill(engine, "mrr_transfer_in", query)
            assert int(rows_in["transfer_minor"].sum()) == want_in
            assert set(rows_in["movement"]) <= {"transfer_in"}
        unfiltered = q(engine, start, end, "month", {}, currency=None, seed=world.seed)
        # Without a filter every transfer out of a group is a transfer in to another.
        assert (compute(engine, "mrr_transfer_in", unfiltered).by_currency
                == compute(engine, "mrr_transfer_out", unfiltered).by_currency)
        steps = compute(engine, "mrr_movements", unfiltered).breakdown
        assert not any(str(k).startswith("transfer") for k in steps["key"])
        # ... and its drill lists each member once, from their start MRR to their end MRR: an
        # upgrade read "MRR start 0.00, transfer in" beside a chart that counted an expansion.
        rows = drill(engine, "mrr_movements", unfiltered, limit=None)
        assert not rows["movement"].isin(["transfer_in", "transfer_out"]).any()
        # No empty "Change" column beside them (it read as an MRR difference that summed to nothing).
        assert "price_change_with_move" not in rows.columns
        assert not rows.duplicated(["period", "member_id", "currency"]).any()
        for label, a, b in boundaries(start, end, "month", tz):
            want = {c: v["end"] - v["start"] for c, v in period_movements(world, a, b, {}).items()}
            got = rows[rows["period"] == label].groupby("currency").apply(
                lambda g: int((g["mrr_end_minor"] - g["mrr_start_minor"]).sum()), include_groups=False).to_dict()
            assert {c: v for c, v in got.items() if v} == {c: v for c, v in want.items() if v}, label


class TestRetentionUnderFilters:
    @HYP
    @given(span=ranges(), gran=st.sampled_from(["week", "month"]),
           flt=st.one_of(st.sampled_from(TIERS).map(lambda t: {"tier": t}),
                         st.sampled_from(["month", "year"]).map(lambda i: {"interval": i}),
                         st.sampled_from(["US", "CA"]).map(lambda c: {"country": c}), st.just({})))
    def test_nrr_and_grr_lose_the_members_who_move_out(self, engine, world, span, gran, flt):
        """NRR = (start + expansion - contraction - churn - transfer out) / start and GRR without
        the expansion, summed over the periods; a move is lost to a filtered segment only (USD
        members reported in USD: no conversion in the way)."""
        start, end = span
        flt = {**flt, "currency": "USD"}
        num_n = num_g = den = 0
        for _, a, b in boundaries(start, end, gran, ZoneInfo("UTC")):
            v = period_movements(world, a, min(b, NOW), seeded(flt, world.seed)).get("USD")
            if not v:
                continue
            lost = v["transfer_out"] if set(flt) != {"currency"} else 0
            num_g += v["start"] - v["contraction"] - v["churn"] - lost
            num_n += v["start"] + v["expansion"] - v["contraction"] - v["churn"] - lost
            den += v["start"]
        query = q(engine, start, end, gran, flt, currency="USD", seed=world.seed)
        for slug, num in (("nrr", num_n), ("grr", num_g)):
            r = compute(engine, slug, query)
            assert [int(x) for x in r.breakdown["value"]] == [num, den], (slug, flt)
            assert r.value == (num / den if den else None), (slug, flt)


class TestLtvPerBucket:
    @HYP
    @given(span=ranges(), gran=st.sampled_from(["week", "month"]))
    def test_each_bucket_divides_by_the_churn_before_it(self, engine, world, span, gran):
        start, end = span
        tz = ZoneInfo("UTC")
        query = q(engine, start, end, gran, {"currency": "USD"}, currency="USD", seed=world.seed)
        r = compute(engine, "ltv", query)

        def churn_of(month: date) -> float:
            a = _midnight(month, tz)
            b = _midnight(date(month.year + month.month // 12, month.month % 12 + 1, 1), tz)
            paying = [m for m, c in world.currency.items() if c == "USD" and state_at(world, m, a)]
            lost = [m for m in paying if state_at(world, m, b) is None]
            return len(lost) / len(paying) if paying else 0.0

        def back(month: date, k: int) -> date:
            i = month.year * 12 + month.month - 1 - k
            return date(i // 12, i % 12 + 1, 1)

        for label, value, (_, _, b) in zip(r.series["period"], r.series["value"],
                                           boundaries(start, end, gran, tz), strict=False):
            moment = min(b, NOW)
            mrrs = [s[0] for m, c in world.currency.items() if c == "USD" and (s := state_at(world, m, moment))]
            mean = sum(churn_of(back(_month(label), k)) for k in range(1, 7)) / 6
            if not mrrs or mean == 0:
                assert value is None or value != value, label
                continue
            arpu = round(Fraction(sum(mrrs), len(mrrs)))
            assert value == int(round(arpu / mean)), label


class TestIncrementalEqualsRebuild:
    @pytest.mark.parametrize("seed", [2718, 31415])
    def test_after_price_changes_and_moves(self, engine, session, seed):
        w = build(session, seed)
        refresh(engine, now=SPLIT)
        # After the split: more renewals, many price changes and moves (half the events move the member).
        advance(session, w, random.Random(seed + 7), NOW, seed, moves=1.5)
        refresh(engine, SPLIT - timedelta(hours=1), now=NOW)
        incremental = _snapshot(engine)
        refresh(engine, now=NOW)
        full = _snapshot(engine)
        for table in full:
            only_full = sorted(set(full[table]) - set(incremental[table]))
            only_incremental = sorted(set(incremental[table]) - set(full[table]))
            assert not only_full and not only_incremental, (table, only_full, only_incremental)
        # ... and the history before the split is what the record says it was billed under.
        tz = ZoneInfo("UTC")
        got = revenue_tables(engine, q(engine, date(2025, 2, 1), SPLIT.date(), "month", {}, currency="USD"))
        want = cash_figure(w, "gross", date(2025, 2, 1), SPLIT.date(), tz, "USD", {}, by="country")
        assert dict(zip(got["revenue_by_country"]["key"], got["revenue_by_country"]["gross"], strict=True)) == want


    @pytest.mark.parametrize("seed", [1618])
    def test_trials_keep_the_price_and_country_they_ended_under(self, engine, session, seed):
        """Trials that ended before the split, then repriced and moved: the incremental refresh
        equals a full rebuild, and each trial stays under its price and country at its end."""
        w = build(session, seed, members=12)
        rng = random.Random(seed)
        trials = []
        for k in range(8):
            cur = rng.choice(list(MONTHLY))
            member = make_member(session, country=HOME[cur][0])
            price = w.prices[(cur, k % 2, "month")]
            ended = SPLIT - timedelta(days=rng.randint(2, 120), hours=rng.randint(0, 23))
            sub = make_subscription(session, member=member, price=price, status="active", mrr_minor=0,
                                    trial_start=ended - timedelta(days=14), trial_end=ended)
            make_change(session, subscription=sub, effective_at=ended - timedelta(days=14), mrr_after=0,
                        kind="trial_started", to_status="trialing", to_price=price)
            trials.append((member, sub, cur, price, ended))
        session.commit()
        refresh(engine, now=SPLIT)
        for member, sub, cur, _, _ in trials:  # after the split: a new price and a move
            moved = w.prices[(cur, 2, "year")]
            member.country = HOME[cur][-1] if len(HOME[cur]) > 1 else "US"
            sub.price_id, sub.tier_id = moved.id, moved.tier_id
            make_change(session, subscription=sub, effective_at=SPLIT + timedelta(days=3), mrr_after=0,
                        kind="price_changed", to_status="active", to_price=moved)
        session.commit()
        refresh(engine, SPLIT - timedelta(hours=1), now=NOW)
        incremental = _snapshot(engine)
        refresh(engine, now=NOW)
        full = _snapshot(engine)
        for table in ("metrics_daily_trials", "metrics_monthly_trials"):
            assert incremental[table] == full[table], table
        with engine.connect() as conn:
            filed = sorted(tuple(str(v) for v in r) for r in conn.execute(text(
                "SELECT day, currency, tier_id, interval, country, trials FROM metrics_daily_trials")))
        want: dict[tuple, int] = {}
        for _, _, cur, price, ended in trials:
            key = (str(ended.date()), cur, str(price.tier_id), "month", HOME[cur][0])
            want[key] = want.get(key, 0) + 1
        assert filed == sorted((*k, str(v)) for k, v in want.items())


def _snapshot(engine) -> dict[str, list]:
    """Every metrics table's rows; the daily and monthly sums per group (a refresh leaves one
    row per group, a rebuild one per kind of row)."""
    summed = {t: rows for t, rows in rollup_snapshot(engine).items() if t in FLOW_TABLES}
    out: dict[str, list] = dict(summed)
    with engine.connect() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'metrics_%'"
            if engine.dialect.name == "sqlite" else
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'metrics_%'"))]
        for table in sorted(tables):
            if table in ("metrics_rollup_state", "metrics_mrr_segments", "metrics_flow_marks", *summed):
                continue
            cols = [c for c in conn.execute(text(f"SELECT * FROM {table} LIMIT 0")).keys() if c != "id"]  # noqa: SIM118
            rows = conn.execute(text(f"SELECT {', '.join(cols)} FROM {table}")).all()
            out[table] = sorted(tuple(str(v) for v in r) for r in rows)
    return out


class TestCashChain:
    def test_one_month_beside_mrr_each_step_drillable(self, engine, world):
        """The chain MRR -> billed -> collected -> refunded -> disputed -> net covers the range's
        last month (one month of cash beside MRR), and each step's rows add up to it."""
        start, end = date(2025, 9, 1), date(2026, 10, 1)
        bundle = page_bundle(engine, "revenue", q(engine, start, end, "month", {}, currency="GBP"))
        cq = bundle.chain_query
        assert (cq.start, cq.end, cq.granularity) == (date(2026, 9, 1), date(2026, 10, 1), "month")
        tz = ZoneInfo("UTC")
        for measure in CASH:
            want = cash_figure(world, measure, cq.start, cq.end, tz, "GBP", {}).get(None, 0)
            assert bundle.chain[SLUG[measure]].value == want, measure
            rows = drill(engine, SLUG[measure], cq, limit=None)
            per_cur = rows.groupby("currency")["amount_minor"].sum().to_dict() if not rows.empty else {}
            assert {c: int(v) for c, v in per_cur.items()} == {
                c: v for c, v in bundle.chain[SLUG[measure]].by_currency.items() if v}, measure
        assert bundle.chain["billed"].value > 0
        net = bundle.chain["net_revenue"]
        assert net.value == (bundle.chain["gross_revenue"].value - bundle.chain["refunds"].value
                             - bundle.chain["disputes_lost"].value)
        assert bundle.chain["mrr"].value == compute(engine, "mrr", cq).value
