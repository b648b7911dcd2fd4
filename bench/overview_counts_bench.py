"""The Overview's plain counts: the scans they were (``tests/support/overview_reference``) beside
the standing counts and daily rollups plus the rows written since (``core.metrics.overview_counts``).

    .venv/bin/python -m bench.overview_counts_bench --url sqlite:////tmp/counts_20k.sqlite [--touched 500]

On an existing database (a demo from ``bench.demo_bench --sqlite-path ... `` or a PostgreSQL
one): migrates it, builds the rollups when they are missing, then changes the MRR of ``--touched``
subscriptions and changes it back (their members are marked, as after a sync that has not been
refreshed yet), times each read old and new (cold: a new engine, first call; warm: median of 3),
times the refresh that applies the marks, and times the reads again with nothing marked. Writes
to the database it is given: never point it at one you care about. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from core import crypto
from core.db import make_engine
from core.db.migrate import upgrade
from core.metrics import overview_counts, standing
from core.metrics.rollups import refresh, state
from core.settings.business import load
from core.timeutil import utc_now
from tests.support import overview_reference as reference

KEY = "dGVzdC1rZXktZm9yLW1lbWJlcmRlc2stdGVzdHMtMDA="


def _ms(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def _cold_warm(url: str, read: Callable[[Any], Any]) -> tuple[float, float]:
    engine = make_engine(url)
    cold = _ms(lambda: read(engine))
    warm = statistics.median(_ms(lambda: read(engine)) for _ in range(3))
    engine.dispose()
    return cold, warm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.overview_counts_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--touched", type=int, default=500, help="subscriptions changed (and changed back) before the reads")
    args = p.parse_args(argv)
    keys = [k.strip() for k in os.environ.get("MEMBERDESK_ENCRYPTION_KEYS", KEY).split(",") if k.strip()]
    crypto.set_keyring(crypto.KeyRing(keys))
    engine = make_engine(args.url)
    upgrade(engine)
    notes = []
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in ("members", "subscriptions",
                                                                                       "payments")}
        built = standing.built(conn)
    if state(engine) is None or not built:
        took = _ms(lambda: refresh(engine))
        notes.append(f"full rebuild first (rollups or standing missing): {took / 1000:.1f} s")
    tz = load(engine).business_timezone
    now = utc_now()
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(text(f"SELECT id FROM subscriptions ORDER BY id LIMIT {args.touched}"))]
        for step in (1, -1):
            conn.execute(text(f"UPDATE subscriptions SET mrr_minor = mrr_minor + {step} WHERE id IN "
                              f"({', '.join(map(str, ids)) or 'NULL'})"))
    with engine.connect() as conn:
        marked = conn.execute(text(f"SELECT COUNT(DISTINCT member_id) FROM ({standing.MARKED}) x")).scalar()
    reads: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = [
        ("members by tier and status", reference.members_by_tier_status, overview_counts.members_by_tier_status),
        ("MRR by currency", reference.mrr_by_currency, overview_counts.mrr_by_currency),
        ("payments this month", lambda e: reference.payments_in_month(e, now=now, tz=tz),
         lambda e: overview_counts.payments_in_month(e, now=now, tz=tz)),
    ]
    rows = []
    for name, old, new in reads:
        assert old(engine).equals(new(engine)), f"{name}: the new read differs from the scan"
        rows.append((f"{name} ({marked} members marked)", *_cold_warm(args.url, old), *_cold_warm(args.url, new)))
    def apply_marks() -> None:  # the refresh's standing step alone, in its own transaction
        with engine.begin() as conn:
            standing.refresh(conn, full=False)

    applied = _ms(apply_marks)
    refreshed = [_ms(lambda: refresh(engine, utc_now() - timedelta(days=1))) for _ in range(3)]
    for name, old, new in reads:
        rows.append((f"{name} (none marked)", *_cold_warm(args.url, old), *_cold_warm(args.url, new)))
    engine.dispose()
    dialect = make_url(args.url).get_backend_name()
    print(f"### Overview counts: {counts['members']:,} members, {counts['subscriptions']:,} subscriptions, "
          f"{counts['payments']:,} payments, {dialect}\n")
    print(f"Load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; asked at "
          f"{now:%Y-%m-%d %H:%M} UTC. " + "; ".join(notes) + "\n")
    print("| read | scan cold ms | scan warm ms | new cold ms | new warm ms |")
    print("|---|---:|---:|---:|---:|")
    for name, oc, ow, nc, nw in rows:
        print(f"| {name} | {oc:,.0f} | {ow:,.0f} | {nc:,.0f} | {nw:,.0f} |")
    print(f"\nThe refresh's standing step applying the {marked} marked members: {applied:,.0f} ms. "
          f"One-day refresh of every rollup (three in a row): {', '.join(f'{x:,.0f}' for x in refreshed)} ms.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
