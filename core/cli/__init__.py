"""``python -m core``: one command line for operators, cron and finance scripts.

Each sub-command lives in its own module with ``register(subparsers)``; the module sets
``func`` on its parser. Failures a person can fix print one sentence and exit 2; a failed
operation (sync, evaluation) exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from core.cli.common import CommandError
from core.settings import SettingsError

COMMAND_MODULES = [
    "core.cli.migrate",
    "core.cli.demo",
    "core.cli.staff",
    "core.cli.keys",
    "core.cli.sandbox",
    "core.cli.run",
    "core.cli.sync",
    "core.cli.reconcile",
    "core.cli.alerts",
    "core.cli.metrics",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Memberdesk operations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (SettingsError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
