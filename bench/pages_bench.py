"""Benchmark: each finance page's full script run, cold and warm, at M (and L) sizes, on SQLite
and PostgreSQL. ``python -m bench.pages_bench --sizes M --databases sqlite,postgresql``.

A run is Streamlit's own ``AppTest`` executing the page script exactly as the server would
(guard, controls, registry reads, every chart and table), signed in as an admin, with the
default controls (the last twelve months and this one, by month, reporting currency).

- **cold**: Streamlit's caches cleared and the engine's connection pool disposed before the run,
  so every number is computed by the registry (the database's own page cache stays as the OS
  left it; the first cold run after loading the world is reported separately as "first").
- **warm**: the same page run again in the same session (the cached registry answers).

The world comes from the demo generator (``python -m cli demo --members N``), written once per
size and database and reused on later runs (``--reuse``). Results go into ``docs/benchmarks.md``
under "Dashboard pages" (the section is replaced, the rest of the file is kept), with the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("overview", "revenue", "churn", "failed_payments")
SIZES = {"S": 3_000, "M": 100_000, "L": 1_000_000}
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Dashboard pages"
DATA = ROOT / "data" / "bench"
KEY = "YmVuY2gta2V5LWZvci1tZW1iZXJkZXNrLWJlbmNoMDA="  # Fernet key for the throwaway bench worlds


def machine() -> str:
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), model)
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")))
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{os.cpu_count()} cores ({model}), {mem} RAM, Python {platform.python_version()}"


def database_url(kind: str, size: str, pg_base: str) -> str:
    if kind == "sqlite":
        DATA.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{DATA / f'pages_{size}.db'}"
    return f"{pg_base.rstrip('/')}_pages_{size.lower()}" if pg_base.count("/") > 2 else f"{pg_base}/memberdesk_pages_{size.lower()}"


def ensure_world(url: str, members: int, reuse: bool) -> None:
    """Create the database, migrate it and load the demo world unless it is already there."""
    from sqlalchemy import create_engine, func, select, text
    from sqlalchemy.engine import make_url

    from core.db import make_engine
    from core.db.migrate import upgrade
    from core.models import Member

    if url.startswith("postgresql"):
        u = make_url(url).set(drivername="postgresql+psycopg")
        admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database}).scalar()
            if exists and not reuse:
                conn.execute(text(f'DROP DATABASE "{u.database}" WITH (FORCE)'))
                exists = None
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{u.database}"'))
        admin.dispose()
    elif not reuse:
        Path(url.split("///", 1)[1]).unlink(missing_ok=True)
    eng = make_engine(url)
    upgrade(eng)
    with eng.connect() as conn:
        have = conn.execute(select(func.count()).select_from(Member)).scalar() or 0
    eng.dispose()
    if have >= members * 0.9:
        print(f"reusing {have:,} members in {url.split('@')[-1]}", flush=True)
        return
    print(f"generating {members:,} members into {url.split('@')[-1]} ...", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "cli", "demo", "--members", str(members), "--seed", "42"], check=True,
                   cwd=ROOT, env=_env(url))
    print(f"  generated in {time.monotonic() - started:.0f} s", flush=True)


def count_members(url: str) -> int:
    from sqlalchemy import func, select

    from core.db import make_engine
    from core.models import Member

    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Member)).scalar() or 0)
    finally:
        eng.dispose()


def _env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=url, MEMBERDESK_ENCRYPTION_KEYS=os.environ.get("BENCH_ENCRYPTION_KEYS", KEY), MEMBERDESK_SECRETS_FILE=str(DATA / "none.toml"),
               STRIPE_API_BASE="", STRIPE_API_KEY="")
    return env


def time_pages(url: str, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per page: first (first cold run), cold (median), warm (median)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.db import dispose_all

    os.environ.update(_env(url))
    results: dict[str, dict[str, float]] = {}
    for page in PAGES:
        colds, warms, first = [], [], None
        for _ in range(repeats):
            st.cache_data.clear()
            st.cache_resource.clear()
            dispose_all()
            at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=600)
            at.session_state["authentication_status"] = True
            at.session_state["username"] = "bench"
            at.session_state["name"] = "Bench"
            at.session_state["roles"] = ["admin"]
            started = time.perf_counter()
            at.run()
            cold = time.perf_counter() - started
            if at.exception:
                raise SystemExit(f"{page} failed: {at.exception[0].value}")
            problems = [e.value for e in at.error]
            if problems:
                print(f"  {page}: the page showed an error: {problems[0]}", flush=True)
            first = cold if first is None else first
            colds.append(cold)
            started = time.perf_counter()
            at.run()
            warms.append(time.perf_counter() - started)
        results[page] = {"first": first or 0.0, "cold": statistics.median(colds), "warm": statistics.median(warms)}
        print(f"  {page:16} first {first:.2f} s  cold {results[page]['cold']:.2f} s  warm {results[page]['warm']:.2f} s",
              flush=True)
    return results


def write_doc(rows: list[tuple[str, str, int, str, dict[str, float]]], repeats: int) -> None:
    lines = [
        SECTION,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()} with `python -m bench.pages_bench`.",
        "One run = Streamlit's AppTest executing the whole page script (guard, controls, every registry "
        "read, every chart and table) as an admin with the default controls (last 12 months and this one, "
        "by month, reporting currency). *first* = the page's first run in this process (for the first page "
        "this includes importing Streamlit's test runner, plotly and the registry); *cold* = Streamlit "
        f"caches cleared and connection pool disposed (median of {repeats}); *warm* = the same page rerun "
        "in the same session (cached answers). The machine was shared with other work while measuring, so "
        "treat single numbers as upper bounds.",
        "",
        "| database | size | members | page | first (s) | cold (s) | warm (s) |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    # Keep rows of earlier runs (other sizes or databases) that this run did not measure again.
    table: dict[tuple[str, str, str], str] = {}
    old = pattern.search(text)
    for line in (old.group(0).splitlines() if old else []):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("sqlite", "postgresql"):
            table[(cells[0], cells[1], cells[3])] = line
    for db, size, members, page, r in rows:
        table[(db, size, page)] = (f"| {db} | {size} | {members:,} | {page} | {r['first']:.2f} | {r['cold']:.2f} | "
                                   f"{r['warm']:.2f} |")
    order = {"S": 0, "M": 1, "L": 2}
    lines += [table[k] for k in sorted(table, key=lambda k: (order.get(k[1], 9), k[0], PAGES.index(k[2])
                                                             if k[2] in PAGES else 9))]
    block = "\n".join(lines) + "\n"
    text = pattern.sub(lambda _m: block + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote the '{SECTION[3:]}' section of {DOC.relative_to(ROOT)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="M", help="comma-separated: S (3k), M (100k), L (1M)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep a world generated by an earlier run")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not touch docs/benchmarks.md")
    parser.add_argument("--prepare-only", action="store_true", help="generate the worlds, time nothing")
    parser.add_argument("--database-url", help="time an existing, populated database instead (keys from "
                        "BENCH_ENCRYPTION_KEYS); --sizes then names its size")
    args = parser.parse_args(argv)
    rows = []
    for size in [s.strip().upper() for s in args.sizes.split(",") if s.strip()]:
        if size not in SIZES:
            print(f"error: unknown size {size}; use S, M or L", file=sys.stderr)
            return 2
        for db in [d.strip() for d in args.databases.split(",") if d.strip()]:
            url = args.database_url or database_url(db, size, args.pg_url)
            if args.database_url:
                db = "postgresql" if url.startswith("postgresql") else "sqlite"
            else:
                ensure_world(url, SIZES[size], args.reuse)
            if args.prepare_only:
                continue
            members = count_members(url)
            print(f"{db} {size} ({members:,} members):", flush=True)
            for page, r in time_pages(url, args.repeats).items():
                rows.append((db, size, members, page, r))
    if not args.no_doc and not args.prepare_only:
        write_doc(rows, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
