"""Helpers shared by the sub-commands: settings, the engine, one-sentence errors."""

from __future__ import annotations

import sys

from sqlalchemy import Engine

from core.crypto import EncryptionKeyError
from core.db import connect
from core.db.migrate import is_up_to_date
from core.settings import Settings, SettingsError, load_settings


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


def progress(message: str) -> None:
    """One line of progress for people at a terminal (stderr, so stdout stays machine-readable)."""
    print(message, file=sys.stderr, flush=True)
