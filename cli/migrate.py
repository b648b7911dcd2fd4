"""``python -m cli migrate``: bring the database schema up to date (safe to run every start)."""

from __future__ import annotations

import argparse

from cli.common import engine, progress
from core.db.migrate import current_revision, head_revision, upgrade


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="apply database migrations", description=__doc__)
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    eng = engine(require_schema=False)
    before = current_revision(eng)
    upgrade(eng, args.revision)
    after = current_revision(eng)
    progress(f"schema at {after} (was {before or 'empty'}; head is {head_revision()})")
    return 0
