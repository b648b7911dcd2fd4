"""Replay alert evaluation day by day over the demo world and count what the default rules open.

    python bench/alerts_replay.py [--database-url URL] [--members 5000] [--seed 1] [--today 2026-11-27]
                                  [--reuse] [--days N] [--write-docs]

Loads the demo world (three years up to ``--today`` 00:00 UTC) into a fresh database (a temporary
SQLite file by default), then runs ``core.alerts.evaluate`` once per day at 00:00 UTC, so each
24-hour window is exactly one UTC day, from the day the four-week baselines exist up to today.
Alerts whose window covers a planted incident day (``demo.incidents``) are "expected"; every
other opened alert is a false alarm on a normal day. Prints a table per rule (alerts opened on
normal days, per week) and, with ``--write-docs``, writes it into docs/alerts.md between the
replay markers, with the machine described.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import delete, func, select  # noqa: E402

from bench.machine import memory_gib, replay_parser  # noqa: E402
from core import crypto  # noqa: E402
from core.alerts import evaluate  # noqa: E402
from core.alerts.rules import all_rules  # noqa: E402
from core.db import make_engine  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.models import Alert, AlertTransition, Notification, Payment, Setting  # noqa: E402
from demo import default_now, incidents, load_demo  # noqa: E402

DOCS = ROOT / "docs" / "alerts.md"
START, END = "<!-- replay:start -->", "<!-- replay:end -->"
BASELINE_DAYS = 35  # four weeks of baseline plus the window


def machine() -> str:
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {memory_gib():.0f} GiB, "
            f"Python {platform.python_version()}")


def main() -> int:
    ap = replay_parser(__doc__, "keep the demo data already in the database")
    ap.add_argument("--members", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--today", default="2026-11-27", help="the demo world's today (UTC date)")
    ap.add_argument("--days", type=int, default=0, help="replay only the last N days (for timing a large world)")
    args = ap.parse_args()

    key = os.environ.get("MEMBERDESK_ENCRYPTION_KEYS", "").split(",")[0] or Fernet.generate_key().decode()
    crypto.set_keyring(crypto.KeyRing([key]))  # a throwaway key for a throwaway database
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='alerts-replay-')}/demo.db"
    engine = make_engine(url)
    upgrade(engine)
    now = default_now(date.fromisoformat(args.today))
    with engine.connect() as conn:
        have = conn.execute(select(func.count()).select_from(Payment)).scalar_one()
    if not (args.reuse and have):
        t = time.perf_counter()
        load_demo(engine, members=args.members, seed=args.seed, now=now)
        print(f"demo world loaded: {args.members} members in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    with engine.begin() as conn:  # start from no alerts (the audit log is append-only and keeps its rows)
        for model in (AlertTransition, Notification, Alert):
            conn.execute(delete(model))
        conn.execute(delete(Setting).where(Setting.key == "alerts.last_evaluated_at"))

    first = now - timedelta(days=365 * 3) + timedelta(days=BASELINE_DAYS)
    if args.days:
        first = max(first, now - timedelta(days=args.days))
    days = (now - first).days
    t = time.perf_counter()
    for d in range(days + 1):
        evaluate(engine, first + timedelta(days=d), deliver=False)
        if d % 100 == 0:
            print(f"  day {d}/{days}", file=sys.stderr)
    seconds = time.perf_counter() - t

    planted = incidents(now)
    incident_days = {i.day for i in planted}
    with engine.connect() as conn:
        rows = conn.execute(select(Alert.rule, Alert.scope, Alert.window_start, Alert.window_end, Alert.opened_at,
                                   Alert.hint)).all()

    def covers(row, day: date) -> bool:
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return row.window_start < day_start + timedelta(days=1) and row.window_end > day_start

    false_alarms: Counter[str] = Counter()
    expected: list = []
    for row in rows:
        if any(covers(row, day) for day in incident_days):
            expected.append(row)
        else:
            false_alarms[row.rule] += 1
    weeks = days / 7
    lines = [f"Demo world: {args.members:,} members, seed {args.seed}, three years up to {now:%Y-%m-%d}; "
             f"evaluated once a day at 00:00 UTC for {days} days ({weeks:.0f} weeks), default rules; "
             f"{url.split(':')[0]}; {machine()}; {seconds:.0f} s ({seconds / max(days, 1) * 1000:.0f} ms per evaluation).",
             "", "| Rule | Alerts opened on normal days | Per week |", "|---|---:|---:|"]
    for rule in all_rules():
        n = false_alarms[rule.slug]
        lines.append(f"| `{rule.slug}` | {n} | {n / weeks:.3f} |")
    total = sum(false_alarms.values())
    lines.append(f"| **all rules** | **{total}** | **{total / weeks:.3f}** |")
    lines += ["", "Planted incidents and the alerts opened for them:", ""]
    for inc in planted:
        caught = [r for r in expected if covers(r, inc.day)]
        found = "; ".join(f"`{r.rule}` `{r.scope}` (opened {r.opened_at:%Y-%m-%d %H:%M})" for r in caught) or "none"
        lines.append(f"- {inc.kind} on {inc.day} ({', '.join(f'{k}={v}' for k, v in inc.scope.items())}): {found}")
    alarms = sorted((r for r in rows if r not in expected), key=lambda r: r.opened_at)
    lines += ["", "False alarms on normal days, by day:" + ("" if alarms else " none."), ""]
    for row in alarms:
        lines.append(f"- {row.opened_at:%Y-%m-%d} `{row.rule}` `{row.scope}`: {row.hint}")
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        doc = DOCS.read_text(encoding="utf-8")
        head, _, rest = doc.partition(START)
        _, _, tail = rest.partition(END)
        DOCS.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")
        print(f"wrote {DOCS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
