"""``python -m cli sync``: pull Stripe into the database (cron-friendly).

Exit codes: 0 the run succeeded; 1 it failed (outage, rate limit, failing events) or another sync
was running; 2 bad usage or configuration. Progress goes to stderr, one line per step; the final
line on stdout is the outcome sentence, so cron mails only what matters.
"""

from __future__ import annotations

import argparse
import sys

from cli.common import CommandError, command, progress, stripe_and_engine
from core.permissions import Actor
from core.sync import resync_member, run_sync


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "sync", __doc__, help="sync Stripe into the database (incremental; --full for a backfill)", run=run)
    p.add_argument("--full", action="store_true", help="backfill every object type, then the events")
    p.add_argument("--member", type=int, metavar="ID", help="resync one member (our member id) only")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the outcome")


def run(args: argparse.Namespace) -> int:
    if args.full and args.member is not None:
        raise CommandError("Use either --full or --member, not both.")
    if args.member is not None and args.member < 1:
        raise CommandError("--member takes a member id (a whole number, 1 or more).")
    client, eng = stripe_and_engine()
    say = (lambda _m: None) if args.quiet else progress
    if args.member is not None:
        result = resync_member(eng, client, args.member, actor=Actor.operator())
    else:
        result = run_sync(eng, client, actor=Actor.operator(), full=args.full, progress=say)
    print(result.message, file=sys.stdout, flush=True)
    return 0 if result.ok else 1
