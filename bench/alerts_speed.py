"""Time one alert evaluation against the payment volume of a 1,000,000-member business.

    python bench/alerts_speed.py [--database-url URL] [--per-day 18000] [--days 35] [--reuse] [--write-docs]

The rules read at most the last 29 days, so what matters for their speed is the number of rows in
that range, not the length of the history. This fills a fresh database (a temporary SQLite file by
default) with ``--per-day`` payment attempts a day for ``--days`` days (18,000 a day is the demo
world's 20M payments over three years at 1M members), plus refunds (1.2 %), disputes (0.25 %) and
cancellations in the same proportions as the demo world, then times ``evaluate`` at ten moments
an hour apart (cold first, then warm) and prints the median.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from bench.machine import replay_parser  # noqa: E402
from core import crypto  # noqa: E402
from core.alerts import evaluate  # noqa: E402
from core.db import make_engine  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.models import Dispute, Member, Payment, Price, Refund, Subscription, Tier  # noqa: E402

DOCS = ROOT / "docs" / "alerts.md"
START, END = "<!-- speed:start -->", "<!-- speed:end -->"
NOW = datetime(2026, 11, 27, tzinfo=UTC)
CODES = ["insufficient_funds"] * 37 + ["generic_decline"] * 19 + ["do_not_honor"] * 8 + ["expired_card"] * 6 + \
    ["authentication_required"] * 6 + ["card_velocity_exceeded"] * 5 + ["processing_error"] * 4
BRANDS = ["visa"] * 60 + ["mastercard"] * 27 + ["amex"] * 8 + ["jcb"] * 4 + ["discover"]
CURRENCIES = ["USD"] * 45 + ["EUR"] * 25 + ["GBP"] * 15 + ["JPY"] * 15


def fill(engine, per_day: int, days: int) -> int:
    rng = random.Random(1)
    with engine.begin() as conn:
        members = 5000
        conn.execute(insert(Member), [{"id": i + 1, "email": f"m{i}@example.com", "name": f"M {i}"}
                                      for i in range(members)])
        conn.execute(insert(Tier), [{"id": 1, "code": "premium", "name": "Premium", "rank": 1}])
        conn.execute(insert(Price), [{"id": 1, "tier_id": 1, "currency": "USD", "unit_amount": 999, "interval": "month"}])
    start = NOW - timedelta(days=days)
    total = per_day * days
    step = timedelta(days=days) / total
    batch: list[dict] = []
    refunds: list[dict] = []
    disputes: list[dict] = []
    for i in range(total):
        pid = i + 1
        created = start + step * i
        first = rng.random() < 0.93
        failed = rng.random() < (0.066 if first else 0.7)
        cur = rng.choice(CURRENCIES)
        row = {"id": pid, "member_id": rng.randrange(1, 5001), "amount": 1200 if cur == "JPY" else 999, "currency": cur,
               "status": "failed" if failed else "succeeded", "created_at": created,
               "attempt_number": 1 if first else 2, "is_renewal": True, "card_brand": rng.choice(BRANDS),
               "card_country": "US", "decline_code": rng.choice(CODES) if failed else None,
               "failure_code": "card_declined" if failed else None, "amount_refunded": 0, "disputed": False}
        batch.append(row)
        if not failed and rng.random() < 0.012:
            refunds.append({"payment_id": pid, "member_id": row["member_id"], "amount": row["amount"], "currency": cur,
                            "status": "succeeded", "reason": "requested_by_customer",
                            "created_at": created + timedelta(days=rng.uniform(0, 5))})
        if not failed and rng.random() < 0.0025:
            disputes.append({"payment_id": pid, "member_id": row["member_id"], "amount": row["amount"],
                             "currency": cur, "status": "needs_response", "created_at": created + timedelta(days=9)})
        if len(batch) == 20000:
            with engine.begin() as conn:
                conn.execute(insert(Payment), batch)
            batch = []
    with engine.begin() as conn:
        if batch:
            conn.execute(insert(Payment), batch)
        conn.execute(insert(Refund), [r for r in refunds if r["created_at"] < NOW])
        conn.execute(insert(Dispute), [d for d in disputes if d["created_at"] < NOW])
        # ~3% monthly churn of ~600k paying members: ~600 cancellations a day
        conn.execute(insert(Subscription), [
            {"member_id": rng.randrange(1, 5001), "tier_id": 1, "price_id": 1, "currency": "USD", "status": "canceled",
             "canceled_at": start + timedelta(seconds=rng.uniform(0, days * 86400)),
             "churn_kind": "voluntary" if rng.random() < 0.7 else "involuntary"} for _ in range(600 * days)])
    return total


def main() -> int:
    ap = replay_parser(__doc__, "keep the rows already in the database")
    ap.add_argument("--per-day", type=int, default=18000)
    ap.add_argument("--days", type=int, default=35)
    args = ap.parse_args()
    crypto.set_keyring(crypto.KeyRing([Fernet.generate_key().decode()]))
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='alerts-speed-')}/speed.db"
    engine = make_engine(url)
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(Payment)).scalar_one()
    if not (args.reuse and rows):
        t = time.perf_counter()
        rows = fill(engine, args.per_day, args.days)
        print(f"filled {rows:,} payments in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    times = []
    for k in range(10):
        t = time.perf_counter()
        evaluate(engine, NOW - timedelta(hours=10 - k), deliver=False)
        times.append(time.perf_counter() - t)
    load = os.getloadavg()[0]
    text = (f"{engine.dialect.name}: {rows:,} payment attempts over {args.days} days ({args.per_day:,} a day, the rate "
            f"of a 1M-member world), one evaluation of all rules: cold {times[0] * 1000:.0f} ms, warm median "
            f"{statistics.median(times[1:]) * 1000:.0f} ms ({platform.machine()}, {os.cpu_count()} cores, "
            f"load average {load:.0f} while measuring).")
    print(text)
    if args.write_docs:
        doc = DOCS.read_text(encoding="utf-8")
        head, _, rest = doc.partition(START)
        old, _, tail = rest.partition(END)
        kept = [line for line in old.strip().splitlines() if line and not line.startswith(f"- {engine.dialect.name}:")]
        DOCS.write_text(f"{head}{START}\n" + "\n".join([*kept, f"- {text}"]) + f"\n{END}{tail}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
