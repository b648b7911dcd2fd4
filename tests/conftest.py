"""Fixtures only (helpers live in tests/support): a freshly migrated database per test, on SQLite
always and on PostgreSQL when TEST_DATABASE_URL is set. The schema always comes from the Alembic
migrations, so the migrations are exercised by every run."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core import crypto
from core.db import make_engine
from core.settings import Settings
from tests.support.db import BACKENDS, PG_URL, TEST_KEY, empty_pg_database, migrated_sqlite, scratch_pg_database

# Fixtures of tests/support, registered once for every test module (a fixture imported into several
# modules would be a separate fixture in each: two Chromiums, two servers, and Playwright's sync API
# refuses a second instance in one thread). Test modules use them without importing them.
pytest_plugins = ["tests.support.servers", "tests.support.sandbox", "tests.support.changes_world",
                  "tests.support.browser"]


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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrated_sqlite(path)
    return path


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
    empty_pg_database(url)
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
