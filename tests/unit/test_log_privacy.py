"""A crash logged with its traceback never names the values a failed SQL statement held
(``core.log_privacy``): PostgreSQL's DETAIL line and SQLAlchemy's bound parameters name a member's
e-mail when a unique rule fails."""

from __future__ import annotations

import io
import logging
import traceback

import pytest
from sqlalchemy import create_engine, make_url, text

from core import log_privacy
from tests.support.db import BACKENDS, PG_URL

EMAIL = "ann.private@example.com"


def _url(backend: str) -> str:
    if backend == "sqlite":
        return "sqlite://"
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    return make_url(PG_URL).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _crash(backend: str) -> BaseException:
    """A unique clash on a plain engine (parameters not hidden), wrapped as a caller may wrap it."""
    engine = create_engine(_url(backend))
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TEMPORARY TABLE people (email VARCHAR(200) UNIQUE)"))
            conn.execute(text("INSERT INTO people (email) VALUES (:e)"), {"e": EMAIL})
            try:
                conn.execute(text("INSERT INTO people (email) VALUES (:e)"), {"e": EMAIL})
            except Exception:
                try:
                    raise RuntimeError("sync run 7 stopped")
                except RuntimeError as exc:
                    return exc
    finally:
        engine.dispose()
    raise AssertionError("the second insert did not fail")


def _logged(exc: BaseException) -> str:
    """``exc`` logged as the sync logs a crash (``log.exception``), through a standard formatter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("memberdesk.test.log_privacy")
    logger.addHandler(handler)
    try:
        logger.error("sync run %s failed", 7, exc_info=(type(exc), exc, exc.__traceback__))
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_logged_unique_clash_keeps_where_and_which_rule_but_not_the_value(backend):
    exc = _crash(backend)
    # Python's own traceback names the member: the fault this guards against.
    assert EMAIL in "".join(traceback.format_exception(exc))
    log_privacy.install()
    logged = _logged(exc)
    assert EMAIL not in logged
    assert "sync run 7 failed" in logged and "in _crash" in logged  # the event and where it happened
    assert "IntegrityError" in logged or "UniqueViolation" in logged  # which rule failed
    assert "RuntimeError: sync run 7 stopped" in logged


def test_an_ordinary_error_keeps_its_whole_text():
    try:
        raise ValueError("tier code 'gold' is unknown")
    except ValueError as exc:
        assert log_privacy.scrubbed(exc) is None  # no database error: the usual traceback
