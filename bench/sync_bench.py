"""Stripe sync benchmark: backfill throughput of the demo world from the sandbox, and the time of an
incremental sync of about 1,000 events.

    .venv/bin/python -m bench.sync_bench [--members 5000] [--db sqlite|postgresql] [--no-doc]

The demo world (``core.demo``) is imported into a scratch sandbox state file, served by
``python -m core sandbox`` on a free port (a separate process, over HTTP, with the real client);
our database is a scratch SQLite file or a scratch PostgreSQL database. Step 1 times ``run_sync
(full=True)`` (objects written per second). Step 2 drives the sandbox through the API (new members
subscribing, some upgrades and cancellations) until about 1,000 events exist, then times one
incremental ``run_sync``. Results go into the "Stripe sync" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core import crypto
from core.db import make_engine
from core.db.migrate import upgrade
from core.demo import iter_stripe_objects
from core.demo.world import World, default_now
from core.sandbox.store import SandboxStore
from core.stripe_gateway import ClientOptions, make_client
from core.sync import run_sync

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Stripe sync"
API_KEY = "sk_test_sync_bench"
BENCH_KEY = "dGVzdC1rZXktZm9yLW1lbWJlcmRlc2stdGVzdHMtMDA="  # a scratch key: the data is thrown away


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB RAM, Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sandbox(state: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "sandbox", "--port", str(port), "--state", str(state), "--api-key", API_KEY,
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


def scratch_database(kind: str, pg_url: str) -> tuple[str, callable]:  # type: ignore[valid-type]
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


def make_events(client, target: int) -> int:  # type: ignore[no-untyped-def]
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


def write_doc(block: str) -> None:
    doc = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(lambda _m: block + "\n", doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + block
    DOC.write_text(doc, encoding="utf-8")
    print(f"wrote the '{SECTION[3:]}' section of {DOC.relative_to(ROOT)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sync_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432"))
    p.add_argument("--no-doc", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]

    crypto.set_keyring(crypto.KeyRing([BENCH_KEY]))
    work = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    state = work / "sandbox.db"
    world = World(seed=args.seed, members=args.members, now=default_now())
    t0 = time.perf_counter()
    store = SandboxStore(state)
    stripe_objects = store.import_objects(iter_stripe_objects(world))
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
        t0 = time.perf_counter()
        full = run_sync(engine, client, full=True)
        backfill_s = time.perf_counter() - t0
        if not full.ok:
            raise SystemExit(f"backfill failed: {full.message}")
        objects = int(full.counts["backfilled"])
        rate = objects / backfill_s
        print(f"backfill: {objects:,} objects in {backfill_s:.1f} s = {rate:,.0f} objects/s "
              f"({full.counts['backfilled_by_type']})", flush=True)

        made = make_events(client, args.events)
        t0 = time.perf_counter()
        inc = run_sync(engine, client)
        inc_s = time.perf_counter() - t0
        if not inc.ok:
            raise SystemExit(f"incremental sync failed: {inc.message}")
        print(f"incremental: {inc.counts['events_new']:,} new events ({made:,} made) in {inc_s:.2f} s", flush=True)
        engine.dispose()
    finally:
        if sandbox.stdin:
            sandbox.stdin.close()
        sandbox.wait(timeout=30)
        drop()

    verdict = "meets" if rate >= 1000 else "misses"
    block = "\n".join([
        SECTION,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()} with "
        f"`python -m bench.sync_bench --members {args.members} --db {args.db}` "
        f"(1-minute load average {load_before:.1f} at the start: other work shared the 2 cores).",
        "The demo world is imported into a scratch sandbox and served by `python -m core sandbox` (its own "
        "process, HTTP on 127.0.0.1); the sync uses the real `stripe` client through the gateway and writes "
        f"every object through the store (mapping, upsert, stale check), into {args.db}.",
        "",
        "| step | objects / events | time (s) | rate |",
        "|---|---:|---:|---:|",
        f"| backfill (`sync --full`) of {args.members:,} members | {objects:,} objects | {backfill_s:.1f} | "
        f"{rate:,.0f} objects/s |",
        f"| incremental sync | {inc.counts['events_new']:,} events | {inc_s:.2f} | "
        f"{inc.counts['events_new'] / inc_s:,.0f} events/s |",
        "",
        f"Target: at least 1,000 objects per second for the backfill; this run {verdict} it. Where the time "
        "goes: [stripe-sync.md](stripe-sync.md#benchmark).",
        "",
    ])
    print(block)
    if not args.no_doc:
        write_doc(block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
