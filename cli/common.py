"""Helpers shared by the sub-commands: settings, the engine, one-sentence errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sqlalchemy import Engine

from core.crypto import EncryptionKeyError
from core.db import connect
from core.db.migrate import is_up_to_date
from core.settings import Settings, SettingsError, load_settings
from core.stripe_gateway import StripeClient, build_client


class CommandError(RuntimeError):
    """A problem the operator can fix; printed as one sentence, exit code 2."""


def settings() -> Settings:
    return load_settings()


def engine(cfg: Settings | None = None, *, require_schema: bool = True) -> Engine:
    cfg = cfg or settings()
    try:
        eng = connect(cfg)
    except EncryptionKeyError as exc:
        raise SettingsError(str(exc)) from None
    if require_schema and not is_up_to_date(eng):
        raise CommandError("The database schema is not up to date: run `python -m cli migrate` first.")
    return eng


def command(sub: argparse._SubParsersAction, name: str, doc: str | None, help: str,
            run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """A sub-command run by ``run``, whose ``--help`` shows its module's docstring as written."""
    p = sub.add_parser(name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)
    return p


def stripe_and_engine() -> tuple[StripeClient, Engine]:
    """The Stripe client and the engine of the configured settings (for commands that read Stripe)."""
    cfg = settings()
    return build_client(cfg), engine(cfg)


def progress(message: str) -> None:
    """One line of progress for people at a terminal (stderr, so stdout stays machine-readable)."""
    print(message, file=sys.stderr, flush=True)
