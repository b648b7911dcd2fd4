"""Real server processes for tests: the dashboard served as ``make run`` serves it, on a free port
with a test secrets file, in its own process group.

- ``free_port()``: a port nothing listens on now.
- ``start_server(tmp, database_url=..., stripe_settings=...)`` / ``stop_server(proc)``.
- ``secrets_for(database_url)``: the secrets a test server (and an ``AppTest``) reads.
- Fixture ``dashboard_server`` (session scope: one server for every browser test of a worker, on
  ``worlds.prepare_database``'s world). Fixtures are registered in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.support.db import TEST_KEY
from tests.support.worlds import World, prepare_database

ROOT = Path(__file__).resolve().parents[2]
COOKIE_KEY = "test-cookie-key-" + "x" * 48


COOKIE_NAME = "memberdesk_test"  # the test servers' sign-in cookie


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def secrets_for(database_url: str) -> dict[str, dict[str, Any]]:
    return {"memberdesk": {"database_url": database_url, "encryption_keys": [TEST_KEY]},
            "authenticator": {"cookie_key": COOKIE_KEY, "cookie_name": COOKIE_NAME,
                              "session_idle_minutes": 30},
            "stripe": {"api_key": "sk_test_dummy", "api_base": ""}}


@dataclass
class Server:
    url: str
    database_url: str
    engine: Engine
    world: World | None
    proc: subprocess.Popen[bytes]
    log_path: Path


def start_server(tmp: Path, *, database_url: str, port: int | None = None,
                 stripe_settings: dict[str, str] | None = None) -> Server:
    """The dashboard served as ``make run`` serves it (``streamlit run dashboard/serve.py``: the
    ``st.App`` under uvicorn, with ``/stripe/webhook`` and ``/healthz``) on a free port with a test
    secrets file, in its own process group; returns when ``/_stcore/health`` answers.
    ``stripe_settings`` replaces the ``[stripe]`` section (api_key, api_base, webhook_secret)."""
    from core.db import make_engine

    port = port or free_port()
    secrets = tmp / "secrets.toml"
    s = secrets_for(database_url)
    secrets.write_text(
        "[memberdesk]\n"
        f'database_url = "{database_url}"\n'
        f'encryption_keys = ["{TEST_KEY}"]\n'
        "[authenticator]\n"
        f'cookie_key = "{COOKIE_KEY}"\n'
        f'cookie_name = "{s["authenticator"]["cookie_name"]}"\n'
        "session_idle_minutes = 30\n"
        "[stripe]\n"
        + "".join(f'{k} = "{v}"\n' for k, v in (stripe_settings or {"api_key": "sk_test_dummy"}).items()),
        encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMBERDESK_", "STRIPE_", "DATABASE_URL", "STREAMLIT_"))}
    env["MEMBERDESK_SECRETS_FILE"] = str(secrets)
    env["PYTHONUNBUFFERED"] = "1"
    log_path = tmp / "streamlit.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/serve.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--secrets.files", str(secrets),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log_path.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
            if r.status == 200:
                return Server(url=url, database_url=database_url, engine=make_engine(database_url), world=None,
                              proc=proc, log_path=log_path)
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("streamlit did not become healthy within 30 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)  # a test server has nothing worth a long graceful shutdown
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def dashboard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for all browser tests of this worker, on a small demo world plus the
    hand-built members the tests name."""
    tmp = tmp_path_factory.mktemp("dashboard_server")
    url, world = prepare_database(tmp / "memberdesk.db")
    server = start_server(tmp, database_url=url)
    server.world = world
    try:
        yield server
    finally:
        stop_server(server.proc)
        server.engine.dispose()
