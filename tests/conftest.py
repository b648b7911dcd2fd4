"""Shared fixtures: a freshly migrated database per test, on SQLite always and on PostgreSQL
when TEST_DATABASE_URL is set. The schema always comes from the Alembic migrations, so the
migrations are exercised by every run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core import crypto
from core.db import dispose_all, make_engine
from core.db.migrate import upgrade
from core.models import Base
from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEST_KEY = "dGVzdC1rZXktZm9yLW1lbWJlcmRlc2stdGVzdHMtMDA="  # Fernet key used only by tests
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql: runs against TEST_DATABASE_URL")
    config.addinivalue_line("markers", "browser: drives a real Chromium against a real server")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(autouse=True)
def _keyring() -> Iterator[None]:
    crypto.set_keyring(crypto.KeyRing([TEST_KEY]))
    yield
    crypto.set_keyring(crypto.KeyRing([TEST_KEY]))


@pytest.fixture(autouse=True)
def _background_refreshes_end() -> Iterator[None]:
    """A write in a test may have asked the background refresher for a rollup refresh; it ends
    before the next test starts (a PostgreSQL test database's name is reused by the next test)."""
    yield
    from core.metrics import refresher

    refresher.wait(timeout=300)


def _worker() -> str:
    # Unique per run and per worker, so several runs at once never drop each other's database.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"{os.getpid()}")[:10]
    return f"{run}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    eng.dispose()
    return path


@contextmanager
def scratch_pg_database(label: str) -> Iterator[str]:
    """A new PostgreSQL database for this run and worker, migrated to head; dropped afterwards."""
    base = make_url(PG_URL).set(drivername="postgresql+psycopg")
    name = f"memberdesk_{label}_{_worker()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    try:
        yield url
    finally:
        dispose_all()  # engines the code under test cached with core.db.connect
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    with scratch_pg_database("test") as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty, fully migrated database, private to this test."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "memberdesk.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database_url")
    eng = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name != "audit_chain_head")
    with eng.begin() as conn:
        # The audit log refuses TRUNCATE (migration 0013). The tests connect as the table's owner,
        # who may lift the trigger, and do so for this one transaction: exactly what the app's
        # own database role must not be able to do (docs/security.md).
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_truncate"))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_truncate"))
        conn.execute(text("UPDATE audit_chain_head SET seq = 0, hash = :genesis WHERE id = 1"), {"genesis": "0" * 64})
    eng.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, encryption_keys=(TEST_KEY,), cookie_key="k" * 64)


# Browser fixtures are registered here, once: a session-scoped fixture imported into several test
# modules becomes a separate fixture in each (two Chromiums, two servers, and Playwright's sync API
# refuses a second instance in one thread). Test modules use them without importing them.
from tests.support.browser import browser, dashboard_server, page  # noqa: E402,F401
