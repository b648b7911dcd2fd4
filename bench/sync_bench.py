"""Stripe sync benchmark: backfill throughput of the demo world from the sandbox, and the time of an
incremental sync of about 1,000 events.

    .venv/bin/python -m bench.sync_bench [--members 5000] [--db sqlite|postgresql] [--repeat 3] [--no-doc]

The demo world (``demo``) is imported into a scratch sandbox state file, served by
``python -m cli sandbox`` on a free port (a separate process, over HTTP, with the real client);
our database is a scratch SQLite file or a scratch PostgreSQL database. Step 1 times ``run_sync
(full=True)`` (objects written per second). Step 2 drives the sandbox through the API (new members
subscribing, some upgrades and cancellations) until about 1,000 events exist, then times one
incremental ``run_sync``. Each of ``--repeat`` runs starts from a fresh sandbox and database; the medians
and every run go into the "Stripe sync" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.machine import cpu_model, free_port, memory_gib
from core import crypto
from core.db import make_engine
from core.db.migrate import upgrade
from core.permissions import Actor
from core.stripe_gateway import ClientOptions, make_client
from core.sync import run_sync
from demo import iter_stripe_objects
from demo.world import World, default_now
from stripe_sandbox.store import SandboxStore

OPERATOR = Actor.operator("test")  # syncs act as a named operator

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Stripe sync"
API_KEY = "sk_test_sync_bench"
BENCH_KEY = "dGVzdC1rZXktZm9yLW1lbWJlcmRlc2stdGVzdHMtMDA="  # a scratch key: the data is thrown away


def machine() -> str:
    return f"{os.cpu_count()} cores ({cpu_model()}), {memory_gib():.0f} GiB RAM, Python {platform.python_version()}"

def start_sandbox(state: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "sandbox", "--port", str(port), "--state", str(state), "--api-key", API_KEY,
         "--exit-with-stdin"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/_sandbox/health",
                                         headers={"Authorization": f"Bearer {API_KEY}"})
            urllib.request.urlopen(req, timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the sandbox did not start")


def scratch_database(kind: str, pg_url: str) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="sync-bench-")) / "memberdesk.db"
        return f"sqlite:///{path}", lambda: None
    base = make_url(pg_url).set(drivername="postgresql+psycopg")
    name = f"sync_bench_{os.getpid()}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def make_events(client, target: int) -> int:
    """New members subscribing (and some changing plan or leaving) until ~target events exist."""
    since = int(time.time()) - 1
    premium = client.v1.products.create(params={"name": "Bench premium"})
    platinum = client.v1.products.create(params={"name": "Bench platinum"})
    monthly = client.v1.prices.create(params={"product": premium.id, "currency": "usd", "unit_amount": 999,
                                              "recurring": {"interval": "month"}})
    upgrade_to = client.v1.prices.create(params={"product": platinum.id, "currency": "usd", "unit_amount": 1999,
                                                 "recurring": {"interval": "month"}})
    count, i = 0, 0
    while count < target:
        cus = client.v1.customers.create(params={"email": f"bench{i}@example.com", "payment_method": "pm_card_visa",
                                                 "invoice_settings": {"default_payment_method": "pm_card_visa"}})
        sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": monthly.id}]})
        if i % 3 == 0:
            client.v1.subscriptions.update(sub.id, params={
                "items": [{"id": sub["items"]["data"][0]["id"], "price": upgrade_to.id}], "proration_behavior": "none"})
        elif i % 5 == 0:
            client.v1.subscriptions.cancel(sub.id)
        i += 1
        if i % 10 == 0:
            count = sum(1 for _ in client.v1.events.list(params={"created": {"gte": since}, "limit": 100})
                        .auto_paging_iter())
    return count


def write_doc(db: str, block: str) -> None:
    """Replace this database's subsection of the "Stripe sync" section (the rest of it is prose)."""
    doc = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n\n"
    section = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = section.search(doc)
    if found is None:
        doc = doc.rstrip("\n") + f"\n\n{SECTION}\n\n" + block
    else:
        text = found.group(0)
        mine = re.compile(rf"^### {re.escape(db)}\n.*?(?=^### |\Z)", re.S | re.M)
        text = mine.sub(lambda _m: block + "\n", text) if mine.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
        doc = doc[:found.start()] + text + doc[found.end():]
    DOC.write_text(doc, encoding="utf-8")
    print(f"wrote '### {db}' in the '{SECTION[3:]}' section of {DOC.relative_to(ROOT)}", flush=True)


@dataclass
class Run:
    objects: int
    backfill_s: float
    backfill_cpu_s: float
    events: int
    incremental_s: float
    incremental_cpu_s: float
    load: tuple[float, float]  # 1-minute load average before and after

    @property
    def rate(self) -> float:
        return self.objects / self.backfill_s


def one_run(args: argparse.Namespace, objects: list[dict]) -> Run:
    """A fresh sandbox and a fresh database: time ``sync --full``, make ~N events, time ``sync``."""
    load_before = os.getloadavg()[0]
    state = Path(tempfile.mkdtemp(prefix="sync-bench-")) / "sandbox.db"
    t0 = time.perf_counter()
    store = SandboxStore(state)
    stripe_objects = store.import_objects(objects)
    store.close()
    print(f"sandbox loaded with {stripe_objects:,} demo objects in {time.perf_counter() - t0:.1f} s", flush=True)
    port = free_port()
    sandbox = start_sandbox(state, port)
    url, drop = scratch_database(args.db, args.pg_url)
    try:
        engine = make_engine(url)
        upgrade(engine)
        client = make_client(API_KEY, api_base=f"http://127.0.0.1:{port}",
                             options=ClientOptions(read_timeout=60, max_network_retries=2))
        t0, c0 = time.perf_counter(), time.process_time()
        full = run_sync(engine, client, full=True, actor=OPERATOR)
        backfill_s, backfill_cpu = time.perf_counter() - t0, time.process_time() - c0
        if not full.ok:
            raise SystemExit(f"backfill failed: {full.message}")
        count = int(full.counts["backfilled"])
        print(f"backfill: {count:,} objects in {backfill_s:.1f} s = {count / backfill_s:,.0f} objects/s, "
              f"{backfill_cpu:.1f} s CPU in this process ({full.counts['backfilled_by_type']})", flush=True)

        made = make_events(client, args.events)
        t0, c0 = time.perf_counter(), time.process_time()
        inc = run_sync(engine, client, actor=OPERATOR)
        inc_s, inc_cpu = time.perf_counter() - t0, time.process_time() - c0
        if not inc.ok:
            raise SystemExit(f"incremental sync failed: {inc.message}")
        print(f"incremental: {inc.counts['events_new']:,} new events ({made:,} made) in {inc_s:.2f} s, "
              f"{inc_cpu:.1f} s CPU", flush=True)
        engine.dispose()
    finally:
        if sandbox.stdin:
            sandbox.stdin.close()
        sandbox.wait(timeout=30)
        drop()
    return Run(count, backfill_s, backfill_cpu, int(inc.counts["events_new"]), inc_s, inc_cpu,
               (load_before, os.getloadavg()[0]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sync_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3, help="runs (each on a fresh sandbox and database); medians quoted")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432"))
    p.add_argument("--no-doc", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = p.parse_args(argv)

    crypto.set_keyring(crypto.KeyRing([BENCH_KEY]))
    objects = list(iter_stripe_objects(World(seed=args.seed, members=args.members, now=default_now())))
    import core.metrics  # noqa: F401  (a running app has it loaded; the first sync would pay for it)

    runs = [one_run(args, objects) for _ in range(max(args.repeat, 1))]
    rate = median(r.rate for r in runs)
    backfill_s = median(r.backfill_s for r in runs)
    inc_s = median(r.incremental_s for r in runs)
    loads = [x for r in runs for x in r.load]
    verdict = "meets" if rate >= 1000 else "misses"
    block = "\n".join([
        f"### {args.db}",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()} with "
        f"`python -m bench.sync_bench --members {args.members} --db {args.db} --repeat {len(runs)}` "
        f"(1-minute load average {min(loads):.1f}-{max(loads):.1f} during the runs: other work shared the 2 cores).",
        "The demo world is imported into a scratch sandbox and served by `python -m cli sandbox` (its own "
        "process, HTTP on 127.0.0.1); the sync uses the real `stripe` client through the gateway and writes "
        f"every object through the store (mapping, upsert, stale check), into {args.db}. Each run starts from a "
        "fresh sandbox and database and times `run_sync` as a whole (listing, writing, the metrics rollup refresh "
        "after it; `core.metrics` is imported before the first run, as a running app has it). *CPU* is this "
        "process's CPU time (the sync's threads"
        + (", SQLite itself" if args.db == "sqlite" else "; not the PostgreSQL server")
        + "; not the sandbox).",
        "",
        "| run | backfill objects | backfill (s) | objects/s | CPU (s) | incremental events | incremental (s) "
        "| CPU (s) | load before / after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *[f"| {i} | {r.objects:,} | {r.backfill_s:.1f} | {r.rate:,.0f} | {r.backfill_cpu_s:.1f} | {r.events:,} | "
          f"{r.incremental_s:.2f} | {r.incremental_cpu_s:.1f} | {r.load[0]:.1f} / {r.load[1]:.1f} |"
          for i, r in enumerate(runs, 1)],
        f"| median | | {backfill_s:.1f} | **{rate:,.0f}** | | | **{inc_s:.2f}** | | |",
        "",
        f"Target: at least 1,000 objects per second for the backfill; the median {verdict} it. Where the time "
        "goes: [stripe-sync.md](stripe-sync.md#benchmark).",
        "",
    ])
    print(block)
    if not args.no_doc:
        write_doc(args.db, block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
