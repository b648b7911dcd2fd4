"""``python -m cli demo``: generate the demo world into the database (and the local sandbox).

The same ``--members``, ``--seed`` and ``--now`` always give the same database. A database that
already has members is refused unless ``--replace`` is given, which empties the member and
Stripe-mirror tables in one transaction first (the audit log is append-only and stays).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

from sqlalchemy import Engine, func, select

from cli.common import CommandError, engine, progress
from core.db import session_scope
from core.models import Member
from demo import clear_demo_tables, create_demo_staff, default_now, load_demo
from demo.simulate import Story
from demo.stream import EVENT_RETENTION, catalogue_objects, events_of, objects_of
from demo.world import PROFILES

MAX_MEMBERS = 5_000_000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate the demo world (members, Stripe objects, staff sign-ins)",
                       description=__doc__)
    p.add_argument("--members", type=int, default=5000, help="number of members (default 5000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--now", help="the world's 'today' as YYYY-MM-DD (default: today, 00:00 UTC)")
    p.add_argument("--replace", action="store_true", help="empty the member and Stripe tables first")
    p.add_argument("--sandbox-state", type=Path, help="also load the world into this local sandbox state file")
    p.add_argument("--profile", choices=("default", "benchmark"), default="default",
                   help="default: the demo (three years, ~5.5 payments per member); benchmark: six years, "
                        "~20 payments per member (docs/demo-data.md)")
    p.add_argument("--workers", type=int, default=1, help="processes building chunks (default 1)")
    p.add_argument("--bcrypt-rounds", type=int, default=12, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def parse_now(text: str | None) -> datetime:
    if not text:
        return default_now()
    try:
        return datetime.combine(date.fromisoformat(text), dtime(0), tzinfo=UTC)
    except ValueError:
        raise CommandError(f"--now must be a date such as 2026-11-27, not “{text}”.") from None


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.members <= MAX_MEMBERS:
        raise CommandError(f"--members must be between 0 and {MAX_MEMBERS:,}.")
    if not 1 <= args.workers <= 8:
        raise CommandError("--workers must be between 1 and 8.")
    now = parse_now(args.now)
    eng = engine()
    with session_scope(eng) as session:
        existing = session.scalar(select(func.count()).select_from(Member)) or 0
    if existing and not args.replace:
        raise CommandError(f"The database already has {existing:,} members; add --replace to empty the member "
                           "and Stripe tables and load the demo world instead.")
    if existing:
        cleared = clear_demo_tables(eng)
        progress(f"emptied {sum(cleared.values()):,} rows from {len(cleared)} tables (the audit log stays)")

    on_chunk = None
    store = None
    if args.sandbox_state is not None:
        try:
            from stripe_sandbox.store import SandboxStore
        except ImportError:
            raise CommandError("The local sandbox is not available in this checkout; drop --sandbox-state.") from None
        args.sandbox_state.parent.mkdir(parents=True, exist_ok=True)
        store = SandboxStore(args.sandbox_state)
        if args.replace:
            store.reset()
        store.import_objects(catalogue_objects())
        # Stripe's Events API keeps 30 days: the sandbox gets the same window, not three years.
        since = now - EVENT_RETENTION

        def on_chunk(stories: list[Story]) -> None:
            store.import_objects(obj for story in stories for obj in objects_of(story))
            store.import_events(evt for story in stories for evt in events_of(story, since))

    years = PROFILES[args.profile].years
    progress(f"generating {args.members:,} members ({args.profile} profile), seed {args.seed}, {years} years up to "
             f"{now:%Y-%m-%d} ...")
    stats = load_demo(eng, members=args.members, seed=args.seed, now=now, progress=progress,
                      workers=args.workers, on_chunk=on_chunk, profile=args.profile)
    if store is not None:
        store.close()
        progress(f"sandbox state written to {args.sandbox_state}")
    created = create_demo_staff(eng, bcrypt_rounds=args.bcrypt_rounds)
    if created:
        progress(f"demo staff sign-ins created: {', '.join(created)}")
    _refresh_rollups(eng)
    _alert_history(eng, now)
    rows = ", ".join(f"{name} {count:,}" for name, count in stats.rows.items() if count)
    progress(f"demo world loaded in {stats.seconds:.1f} s: {rows}")
    return 0


def _refresh_rollups(eng: Engine) -> None:
    """Rebuild the metric rollups from the new rows."""
    from core.metrics.rollups import refresh

    started = time.perf_counter()
    progress("building the metric rollups ...")
    refresh(eng)
    progress(f"metric rollups built in {time.perf_counter() - started:.1f} s")


def _alert_history(eng: Engine, now: datetime) -> None:
    """Give the Alerts page a past: run the real rules as of the day after each planted incident
    and the two days after (opened, clear, resolved), as a cron would have. A few evaluations, not a
    replay of every day, so the first start stays quick; nothing is sent."""
    from core.alerts import evaluate
    from demo import incidents

    moments = sorted({datetime.combine(i.day, dtime(0), tzinfo=UTC) + timedelta(days=d)
                      for i in incidents(now) for d in (1, 2, 3)})
    opened = resolved = 0
    for moment in (m for m in moments if m <= now):
        result = evaluate(eng, now=moment, deliver=False)
        opened, resolved = opened + len(result.opened), resolved + len(result.resolved)
    progress(f"alert history: {opened} alert(s) opened and {resolved} resolved on the planted incident days")
