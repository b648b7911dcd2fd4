"""Tracebacks in the logs without the values a failed SQL statement carried.

A database error's text names the values it failed on: PostgreSQL's ``DETAIL: Key
(email)=(ann@example.com) already exists``, and SQLAlchemy's ``[parameters: ...]`` where an engine
does not hide them. A crash logged with its traceback (``log.exception``) printed that text, and the
driver's own exception again as the cause. ``install()`` makes every log record whose exception
involves a database error carry its traceback with each such error reduced to its first line
(``core.sync.failures.failure_text``): the frames still say where, the first line which table and
rule, and no member's data reaches the log. Installed once by each entry point (the command line,
the dashboard's server).
"""

from __future__ import annotations

import logging
import sqlite3
import traceback
from typing import Any

from sqlalchemy.exc import DBAPIError, StatementError

_installed = False


def _is_database_error(exc: BaseException) -> bool:
    if isinstance(exc, StatementError | sqlite3.Error):
        return True
    module = type(exc).__module__ or ""
    return module.startswith("psycopg")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return out


def first_line(exc: BaseException) -> str:
    """``Type: first line of its text``; a SQLAlchemy error is named by its driver's error."""
    if isinstance(exc, DBAPIError | StatementError) and exc.orig is not None:
        exc = exc.orig
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def scrubbed(exc: BaseException) -> str | None:
    """The traceback to log for ``exc``, or None when no database error is involved (the usual
    traceback is fine)."""
    chain = _chain(exc)
    if not any(_is_database_error(e) for e in chain):
        return None
    parts: list[str] = []
    for e in reversed(chain):  # the innermost first, as Python prints a chain
        if parts:
            parts.append("\nThe above exception led to the following exception:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(e.__traceback__))
        parts.append(first_line(e) if _is_database_error(e) else "".join(traceback.format_exception_only(e)).rstrip())
    return "".join(parts).rstrip()


def install() -> None:
    """Make every log record from now on carry ``scrubbed`` tracebacks (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        info = record.exc_info
        if info and info[1] is not None:
            text = scrubbed(info[1])
            if text is not None:
                # A formatter uses exc_text when it is set, instead of formatting exc_info itself.
                record.exc_text = text
        return record

    logging.setLogRecordFactory(factory)
