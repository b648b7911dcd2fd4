"""``python -m cli``: one command line for operators, cron and finance scripts.

Each sub-command lives in its own module with ``register(subparsers)``; the module sets
``func`` on its parser. Failures a person can fix print one sentence and exit 2; a failed
operation (sync, evaluation) exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cli.common import CommandError
from core import log_privacy
from core.settings import SettingsError

COMMAND_MODULES = [
    "cli.migrate",
    "cli.demo",
    "cli.staff",
    "cli.keys",
    "cli.sandbox",
    "cli.run",
    "cli.sync",
    "cli.reconcile",
    "cli.alerts",
    "cli.metrics",
    "cli.audit",
]


# Command -> the module that registers it. A command line names one command, so only its module
# is imported: a finance script's `metrics` export does not pay for the demo generator, the
# sandbox or the Stripe client (help and unknown commands import them all).
COMMANDS = {"migrate": "cli.migrate", "demo": "cli.demo", "staff": "cli.staff",
            "keygen": "cli.keys", "rotate-key": "cli.keys", "init-local": "cli.keys",
            "sandbox": "cli.sandbox", "run": "cli.run", "sync": "cli.sync",
            "reconcile": "cli.reconcile", "alerts": "cli.alerts", "metrics": "cli.metrics",
            "audit": "cli.audit"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cli", description="Memberdesk operations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    log_privacy.install()
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
