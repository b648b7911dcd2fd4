"""Metrics benchmark: every metric and every page bundle, cold and warm, on a generated world.

    .venv/bin/python -m bench.metrics_bench --size M --db sqlite [--keep] [--write-docs]
    .venv/bin/python -m bench.metrics_bench --opening DATABASE_URL [--old-src OLD_CHECKOUT] [--write-docs]
    .venv/bin/python -m bench.metrics_bench --size M --db postgresql [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

Sizes: S = 10,000 members, M = 100,000, L = 1,000,000 (three years of history from the demo
generator, ``demo.load_demo``). The world is generated once per size and database and kept
(SQLite: <--data-dir>/memberdesk_metrics_<size>.db, default /tmp; PostgreSQL: database memberdesk_metrics_<size>);
``--regenerate`` starts over.

Measured: full and one-day incremental rollup refresh; each metric for the last complete month
(granularity month, reporting currency) cold (new engine, first call) and warm (median of 3);
each page bundle for the dashboard's default range (twelve months and this one, through today),
cold and warm; the CLI export of a year of monthly metrics
(a separate process, as finance runs it); and the naive way for one ratio (first-attempt failure
rate for a year read into pandas from the payments table) with its memory. "Cold" means a new
engine and connection and nothing cached in the process; the operating system's file cache is
not dropped (that needs root).

``--opening``: the pages with the parameters they open with, at the wall-clock minute, on an
existing database (``OPENING_DOC`` below).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, text
from sqlalchemy.engine import make_url

from bench.machine import cpu_model, load_average
from core import crypto
from core.db import make_engine
from core.db.migrate import upgrade

SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
KEY = "fEhmDxvhCpEu4b16boUlf95HY5t4RM5suyOSd3CeyC8="  # a throwaway Fernet key for generated data
NOW = datetime(2026, 11, 27, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def database_url(size: str, db: str, pg_url: str, regenerate: bool, data_dir: Path) -> tuple[str, bool]:
    """(url, exists already)."""
    if db == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / f"memberdesk_metrics_{size}.db"
        if regenerate and path.exists():
            path.unlink()
        return f"sqlite:///{path}", path.exists()
    base = make_url(pg_url).set(drivername="postgresql+psycopg")
    name = f"memberdesk_metrics_{size.lower()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar() is not None
        if regenerate and exists:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            exists = False
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False), exists


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out


def timed_cpu(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median wall and median CPU time of this process (ms) over ``runs`` calls. On a shared
    machine the wall time is mostly waiting for a core; the CPU time (SQLite works inside this
    process; PostgreSQL's server time is not counted) is the steadier measure."""
    walls, cpus = [], []
    for _ in range(runs):
        c, t = time.process_time(), time.perf_counter()
        fn()
        walls.append((time.perf_counter() - t) * 1000)
        cpus.append((time.process_time() - c) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def fresh(url: str) -> Engine:
    return make_engine(url)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.metrics_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=tuple(SIZES), default="M")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp"),
                   help="folder of the SQLite world files (default /tmp; keep them outside the repository)")
    p.add_argument("--regenerate", action="store_true")
    p.add_argument("--profile", choices=("default", "benchmark"), default=None,
                   help="demo profile of a new world (default: benchmark for L, the issue's 1M-member / "
                        "20M-payment world; default for S and M)")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--write-docs", action="store_true", help="merge the results into docs/benchmarks.md")
    p.add_argument("--opening", metavar="URL",
                   help="time the pages as they open now on this existing database (see OPENING_DOC)")
    p.add_argument("--old-src", type=Path, help="with --opening: also time an older checkout's code side by side")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.opening:
        return opening_main(args)
    crypto.set_keyring(crypto.KeyRing([KEY]))
    url, exists = database_url(args.size, args.db, args.pg_url, args.regenerate, args.data_dir)
    engine = make_engine(url)
    gen_s = None
    if not exists:
        from demo import load_demo

        upgrade(engine)
        t = time.perf_counter()
        profile = args.profile or ("benchmark" if args.size == "L" else "default")
        load_demo(engine, members=SIZES[args.size], seed=1, now=NOW, workers=2, profile=profile,
                  progress=lambda m: print(m, file=sys.stderr, flush=True))
        gen_s = time.perf_counter() - t
        print(f"generated in {gen_s:.0f} s", file=sys.stderr, flush=True)
    else:
        upgrade(engine)
    with engine.begin() as conn:  # worlds generated before migration 0002 gained this index
        conn.execute(text("CREATE INDEX IF NOT EXISTS ix_membership_changes_recorded "
                          "ON membership_changes (recorded_at)"))
    # Planner statistics after the bulk load (PostgreSQL would otherwise plan for an empty table),
    # and on PostgreSQL the visibility map a running database gets from autovacuum (without it an
    # index-only scan still visits every table page). Cheap once done: vacuumed pages are skipped.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE)" if engine.dialect.name == "postgresql" else "ANALYZE"))
    if args.generate_only:
        return 0
    results = run(url, engine, args)
    results["generated_s"] = gen_s
    table = render(args, results)
    print(table)
    if args.write_docs:
        write_docs(args, table)
    return 0


def run(url: str, engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    import core.metrics.bundles  # noqa: F401 (with pandas: a running dashboard has both loaded before any page)
    from core.metrics import Query, list_metrics, page_bundle
    from core.metrics.rollups import refresh

    out: dict[str, Any] = {}
    with engine.connect() as conn:
        out["payments"] = conn.execute(text("SELECT COUNT(*) FROM payments")).scalar()
        out["changes"] = conn.execute(text("SELECT COUNT(*) FROM membership_changes")).scalar()
        out["members"] = conn.execute(text("SELECT COUNT(*) FROM members")).scalar()
    out["started"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load_average()}"
    out["refresh_full_ms"], _ = timed(lambda: refresh(engine, now=NOW))
    out["refresh_day_ms"], out["refresh_day_cpu"] = timed_cpu(
        lambda: refresh(engine, NOW - timedelta(days=1), now=NOW), 5)
    engine.dispose()

    month = Query.make(engine, start=date(2026, 10, 1), end=date(2026, 11, 1), now=NOW)
    year = Query.make(engine, start=date(2025, 11, 1), end=date(2026, 11, 1), now=NOW)
    # What a page shows when opened: twelve full months and this one, through today.
    shown = Query.make(engine, start=date(2025, 11, 1), end=NOW.date() + timedelta(days=1), now=NOW)
    rows = []
    for m in list_metrics():
        eng = fresh(url)
        cold, _ = timed(lambda m=m, eng=eng: m.compute(eng, month))
        warm = statistics.median(timed(lambda m=m, eng=eng: m.compute(eng, month))[0] for _ in range(3))
        eng.dispose()
        rows.append((m.slug, cold, warm))
        print(f"{m.slug}: cold {cold:.0f} ms, warm {warm:.0f} ms", file=sys.stderr, flush=True)
    out["metrics"] = rows
    bundles = []
    for page in ("overview", "revenue", "churn", "failed_payments"):
        eng = fresh(url)
        cold, _ = timed(lambda page=page, eng=eng: page_bundle(eng, page, shown))
        warm, warm_cpu = timed_cpu(lambda page=page, eng=eng: page_bundle(eng, page, shown), 5)
        eng.dispose()
        bundles.append((page, cold, warm, warm_cpu))
        print(f"bundle {page}: cold {cold:.0f} ms, warm {warm:.0f} ms", file=sys.stderr, flush=True)
    out["bundles"] = bundles
    env = {**os.environ, "DATABASE_URL": url, "MEMBERDESK_ENCRYPTION_KEYS": KEY}
    cli = [sys.executable, "-m", "cli", "metrics", "--from", "2025-11-01", "--to", "2026-11-01",
           "--granularity", "month", "--format", "json", "--now", NOW.isoformat()]
    walls, cpus, ok = [], [], True
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(cli, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        walls.append((time.perf_counter() - t) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
        if proc.returncode:
            ok = False
            print(proc.stderr, file=sys.stderr)
    out["cli_ms"], out["cli_cpu"], out["cli_ok"] = statistics.median(walls), statistics.median(cpus), ok
    out["naive_ms"], out["naive_rss_mib"], out["naive_rate"] = naive_failure_rate(url)
    eng = fresh(url)
    out["registry_rate"] = Query and __import__("core.metrics", fromlist=["compute"]).compute(
        eng, "failure_rate", year).value
    out["registry_rate_ms"] = statistics.median(
        timed(lambda: __import__("core.metrics", fromlist=["compute"]).compute(eng, "failure_rate", year))[0]
        for _ in range(3))
    eng.dispose()
    out["ended"] = f"{datetime.now(UTC):%H:%M} UTC, load average {load_average()}"
    return out


def naive_failure_rate(url: str) -> tuple[float, float, float]:
    """The way we do not do it: read a year of payments into pandas and aggregate there (the
    year is picked in SQL, so the naive way is not charged for the other years)."""
    import pandas as pd

    from core.db.types import UTCDateTime

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    eng = fresh(url)
    t = time.perf_counter()
    sql = text("SELECT id, invoice_id, status, created_at, amount, currency, attempt_number, is_renewal, "
               "decline_code, card_brand FROM payments WHERE created_at >= :a AND created_at < :b").bindparams(
        bindparam("a", type_=UTCDateTime()), bindparam("b", type_=UTCDateTime()))
    with eng.connect() as conn:
        df = pd.read_sql(sql, conn, params={"a": datetime(2025, 11, 1, tzinfo=UTC), "b": datetime(2026, 11, 1, tzinfo=UTC)})
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    year = df[(df["created_at"] >= pd.Timestamp("2025-11-01", tz="UTC"))
              & (df["created_at"] < pd.Timestamp("2026-11-01", tz="UTC"))]
    first = year[(year["is_renewal"].astype(bool)) & (year["attempt_number"] == 1)]
    rate = float((first["status"] == "failed").sum() / len(first)) if len(first) else 0.0
    ms = (time.perf_counter() - t) * 1000
    eng.dispose()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ms, after - before, rate


def render(args: argparse.Namespace, r: dict[str, Any]) -> str:
    lines = [f"### {args.size} ({r['members']:,} members, {r['payments']:,} payments, "
             f"{r['changes']:,} membership changes) on {args.db}", ""]
    if r.get("generated_s"):
        lines.append(f"World generated in {r['generated_s']:.0f} s.")
    lines += [f"Machine: {cpu_model()}, {os.cpu_count()} cores, "
              f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM. "
              f"Run {r['started']} (at the end: {r['ended']}).",
              f"Rollup refresh: full {r['refresh_full_ms'] / 1000:.1f} s, one day incremental "
              f"{r['refresh_day_ms']:.0f} ms (CPU of this process {r['refresh_day_cpu']:.0f} ms; median of 5). "
              f"CLI export of 12 monthly periods of every metric as JSON (a new process, imports included): "
              f"{r['cli_ms'] / 1000:.2f} s, CPU {r['cli_cpu'] / 1000:.2f} s (median of 3)"
              f"{'' if r['cli_ok'] else ' (FAILED)'}.",
              f"Naive pandas first-attempt failure rate for a year: {r['naive_ms']:.0f} ms, "
              f"+{r['naive_rss_mib']:.0f} MiB peak RSS (rate {r['naive_rate']:.4f}); the registry: "
              f"{r['registry_rate_ms']:.0f} ms warm (rate {r['registry_rate']:.4f}), "
              f"{r['naive_ms'] / max(r['registry_rate_ms'], 0.01):.0f}x faster.", "",
              "| page bundle (12 months + this one) | cold ms | warm ms | warm CPU ms |", "|---|---:|---:|---:|"]
    lines += [f"| {p} | {c:.0f} | {w:.0f} | {cpu:.0f} |" for p, c, w, cpu in r["bundles"]]
    lines += ["", "| metric (one month) | cold ms | warm ms |", "|---|---:|---:|"]
    lines += [f"| {s} | {c:.0f} | {w:.0f} |" for s, c, w in r["metrics"]]
    return "\n".join(lines) + "\n"


def write_docs(args: argparse.Namespace, table: str) -> None:
    """Replace this size/database's block inside the "Metrics" section of docs/benchmarks.md."""
    path = ROOT / "docs" / "benchmarks.md"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    header = "## Metrics"
    machine = (f"Machine: {cpu_model()}, {os.cpu_count()} cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM. "
               "Command: `python -m bench.metrics_bench --size M|L --db sqlite|postgresql --write-docs`.")
    start_mark, end_mark = f"<!-- metrics:{args.size}:{args.db} -->", f"<!-- /metrics:{args.size}:{args.db} -->"
    block = f"{start_mark}\n{table}{end_mark}\n"
    if header not in doc:
        doc = doc.rstrip() + f"\n\n{header}\n\n{machine}\n\n"
    if start_mark in doc:
        a, b = doc.index(start_mark), doc.index(end_mark) + len(end_mark) + 1
        doc = doc[:a] + block + doc[b:]
    else:
        # Insert at the end of the Metrics section (before the next "## " heading, if any).
        i = doc.index(header) + len(header)
        nxt = doc.find("\n## ", i)
        pos = len(doc) if nxt < 0 else nxt + 1
        doc = doc[:pos].rstrip() + "\n\n" + block + ("\n" + doc[pos:] if nxt >= 0 else "")
    path.write_text(doc)


# ------------------------------------------------------------------ the pages as they open, now

OPENING_DOC = """Pages as they open, at the wall-clock minute: each page's data with the parameters the
dashboard passes when a person opens it now (the Overview: "Month to date", day buckets up to the
present minute in the business time zone, with the previous period; Revenue, Churn and Failed
payments: twelve months and this one by month, through the present minute), plus the Overview's
direct counts. *cold* = a new engine in a new process, nothing cached; *warm* = the median of 3
more calls. ``--old-src`` runs the same calls in a second process importing ``core`` from an
older checkout (its own code, the same database), side by side (one warm call, and not the
Overview's longer periods: each of its day buckets costs tens of seconds there)."""

OVERVIEW_PERIODS = ("mtd", "30d", "90d", "ytd")


def opening_timings(url: str, refresh_too: bool, side: bool = False) -> dict[str, Any]:
    """Time the opening reads (and, with ``refresh_too``, the one-day and five-minute refresh)
    with whatever ``core`` is importable: called in this process and, for the old code, in a
    subprocess whose ``core`` is the old checkout's."""
    t0 = time.perf_counter()
    import core.metrics.bundles  # noqa: F401 (imports paid once, as in a running server)
    from core.metrics import Query, overview_counts, page_bundle
    from core.settings.business import load
    from core.timeutil import utc_now, zone

    out: dict[str, Any] = {"import_ms": (time.perf_counter() - t0) * 1000}
    engine = make_engine(url)
    bs = load(engine)
    tz = bs.business_timezone
    now = utc_now().replace(second=0, microsecond=0)
    now5 = now - timedelta(minutes=now.minute % 5)  # the Overview's cache key
    today = now.astimezone(zone(tz)).date()
    out["now"] = f"{now:%Y-%m-%d %H:%M} UTC ({now.astimezone(zone(tz)):%H:%M} in {tz})"

    def overview_query(code: str) -> Any:
        try:  # the product's own question (the cards kept by the server ask it every minute)
            from core.metrics.kept import overview_query as asked

            return asked(engine, code, now)
        except ImportError:  # older code: the question its Overview asked (cached per five minutes)
            end = today + timedelta(days=1)
            start = {"30d": end - timedelta(days=30), "90d": end - timedelta(days=90),
                     "ytd": today.replace(month=1, day=1)}.get(code, today.replace(day=1))
            return Query.make(engine, start=start, end=end, now=now5, granularity="month" if code == "ytd" else "day")

    analytics = Query.make(engine, start=date(today.year - 1, today.month, 1), end=today + timedelta(days=1),
                           now=now, granularity="month")
    rows: list[tuple[str, float, float, float]] = []

    def measure(name: str, fn: Callable[[], Any]) -> None:
        cold, _ = timed(fn)
        # The older code's side run: one warm call (its day buckets take tens of seconds each).
        # CPU: this process's (SQLite works inside it; PostgreSQL's server time is not counted),
        # the steadier measure on a shared machine.
        warm, cpu = timed_cpu(fn, 1 if side else 3)
        rows.append((name, cold, warm, cpu))
        print(f"{name}: cold {cold:.0f} ms, warm {warm:.0f} ms, CPU {cpu:.0f} ms", file=sys.stderr, flush=True)

    measure("overview, month to date (as it opens)", lambda: page_bundle(engine, "overview", overview_query("mtd")))
    for code in OVERVIEW_PERIODS[1:] if not side else ():
        measure(f"overview, {code}", lambda code=code: page_bundle(engine, "overview", overview_query(code)))
    for page in ("revenue", "churn", "failed_payments"):
        measure(page, lambda page=page: page_bundle(engine, page, analytics))
    measure("overview counts", lambda: (overview_counts.members_by_tier_status(engine),
                                        overview_counts.mrr_by_currency(engine),
                                        overview_counts.payments_in_month(engine, now=now, tz=tz),
                                        overview_counts.data_through(engine), overview_counts.open_alerts(engine)))
    out["rows"] = rows
    if refresh_too:
        from core.metrics.rollups import refresh

        refresh(engine, now - timedelta(days=1))  # the first after the pages: pays for today's new periods
        out["refresh_day"] = timed_cpu(lambda: refresh(engine, utc_now() - timedelta(days=1)), 3)
        out["refresh_5min"] = timed_cpu(lambda: refresh(engine, utc_now() - timedelta(minutes=5)), 3)
    engine.dispose()
    return out


def opening_main(args: argparse.Namespace) -> int:
    import json

    url = args.opening
    keys = [k.strip() for k in os.environ.get("MEMBERDESK_ENCRYPTION_KEYS", KEY).split(",") if k.strip()]
    crypto.set_keyring(crypto.KeyRing(keys))
    if args.json:  # the side run: print the timings for the parent
        print(json.dumps(opening_timings(url, refresh_too=False, side=True)))
        return 0
    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar()
                  for t in ("members", "payments", "membership_changes")}
    engine.dispose()
    started = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load_average()}"
    old = None
    if args.old_src:
        env = {**os.environ, "PYTHONPATH": str(args.old_src)}
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--opening", url, "--json"],
                              cwd=args.old_src, env=env, capture_output=True, text=True, check=False)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
        else:
            old = json.loads(proc.stdout.strip().splitlines()[-1])
        old_load = load_average()
    new = opening_timings(url, refresh_too=True)
    ended = f"{datetime.now(UTC):%H:%M} UTC, load average {load_average()}"
    dialect = make_url(url).get_backend_name()
    lines = [f"### Pages as they open: {counts['members']:,} members, {counts['payments']:,} payments, "
             f"{counts['membership_changes']:,} membership changes, {dialect}", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores, "
             f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM. Run {started} "
             f"(at the end: {ended}); asked at {new['now']}."
             + (f" Old code: {args.old_src} (load average {old_load} when it ended)." if old else ""), ""]
    head = ("| page data | " + ("old cold ms | old warm ms | old warm CPU ms | " if old else "")
            + "new cold ms | new warm ms | new warm CPU ms |")
    lines += [head, "|---|" + ("---:|---:|---:|" if old else "") + "---:|---:|---:|"]
    old_rows = {r[0]: r for r in old["rows"]} if old else {}
    for name, cold, warm, cpu in new["rows"]:
        o = old_rows.get(name)
        mid = (f"{o[1]:,.0f} | {o[2]:,.0f} | {o[3]:,.0f} | " if o else "n/a | n/a | n/a | ") if old else ""
        lines.append(f"| {name} | {mid}{cold:,.0f} | {warm:,.0f} | {cpu:,.0f} |")
    wall, cpu = new["refresh_day"]
    wall5, cpu5 = new["refresh_5min"]
    lines += ["", f"Rollup refresh (new code, median of 3): from a day back {wall:,.0f} ms (CPU of this process "
              f"{cpu:,.0f} ms); from five minutes back, as after a staff change, {wall5:,.0f} ms (CPU {cpu5:,.0f} ms)."]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.write_docs:
        args.size, args.db = "opening", dialect
        write_docs(args, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
