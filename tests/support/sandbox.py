"""The Stripe sandbox as a real subprocess for tests: ``from tests.support.sandbox import sandbox``.

- ``sandbox`` (function fixture): one ``python -m cli sandbox`` process per test worker, started on
  first use on a free port with its own state file and API key, in its own process group (killed
  at the end of the session); every test gets it reset (no objects, no faults, no idempotency keys).
  The handle has ``.url``, ``.api_key``, ``.state_path``, ``.client()`` (a real ``stripe.StripeClient``
  pointed at it), ``.fault(...)``, ``.clear_faults()``, ``.reset()``.
- ``start_sandbox(state_path, ...)``: a private process (context manager) for tests that restart it
  or configure webhooks; ``.restart()`` keeps port and state file.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import stripe

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_test_sandbox_tests_0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SandboxProcess:
    def __init__(self, state_path: Path, *, port: int | None = None, api_key: str = API_KEY,
                 webhook_url: str | None = None, webhook_secret: str | None = None) -> None:
        self.state_path = Path(state_path)
        self.port = port or free_port()
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.state_path.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> SandboxProcess:
        cmd = [sys.executable, "-m", "cli", "sandbox", "--port", str(self.port), "--state", str(self.state_path),
               "--api-key", self.api_key, "--exit-with-stdin"]
        if self.webhook_url:
            cmd += ["--webhook-url", self.webhook_url, "--webhook-secret", self.webhook_secret or ""]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        # stdin is a pipe only we hold: if this process dies, the server sees EOF and stops.
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited early: {self.log_path.read_text()[-2000:]}")
            try:
                self.control("GET", "/_sandbox/health")
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("sandbox did not answer in time")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- control API -------------------------------------------------------------------------
    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def fault(self, path_prefix: str = "/v1/", *, method: str | None = None, status: int = 500, times: int | None = 1,
              mode: str = "status", seconds: float = 0.0, skip: int = 0, should_retry: bool | None = None) -> dict[str, Any]:
        """Make the next matching request(s) fail. ``times=None``: every matching request."""
        spec = {"path_prefix": path_prefix, "method": method, "status": status, "times": times, "mode": mode,
                "seconds": seconds, "skip": skip, "should_retry": should_retry}
        return self.control("POST", "/_sandbox/faults", spec)

    def clear_faults(self) -> None:
        self.control("DELETE", "/_sandbox/faults")

    def requests(self) -> list[dict[str, Any]]:
        """The API requests the sandbox received since the last ``clear_requests`` (method, path, status)."""
        return list(self.control("GET", "/_sandbox/requests")["data"])

    def clear_requests(self) -> None:
        self.control("DELETE", "/_sandbox/requests")

    def after_retries(self, outcome: str) -> None:
        """What happens when the retries of a renewal are used up: cancel (default), unpaid or past_due."""
        self.control("POST", "/_sandbox/settings", {"after_retries": outcome})

    def event_retention(self, days: int) -> None:
        """List only events created in the last ``days`` days (Stripe: 30); 0 keeps all (default)."""
        self.control("POST", "/_sandbox/settings", {"event_retention_days": days})

    def reset(self) -> None:
        self.control("POST", "/_sandbox/reset")

    def client(self, **kwargs: Any) -> stripe.StripeClient:
        kwargs.setdefault("max_network_retries", 0)
        return stripe.StripeClient(self.api_key, base_addresses={"api": self.url}, **kwargs)


@contextmanager
def start_sandbox(state_path: Path | str, **kwargs: Any) -> Iterator[SandboxProcess]:
    proc = SandboxProcess(Path(state_path), **kwargs).start()
    try:
        yield proc
    finally:
        proc.stop()


_shared: SandboxProcess | None = None


def _shared_sandbox(config: pytest.Config) -> SandboxProcess:
    global _shared
    if _shared is None or not _shared.alive():
        state = Path(tempfile.mkdtemp(prefix="sandbox-tests-")) / "sandbox.db"
        _shared = SandboxProcess(state).start()
        proc = _shared
        config.add_cleanup(proc.stop)
        atexit.register(proc.stop)
    return _shared


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[SandboxProcess]:
    sb = _shared_sandbox(request.config)
    sb.reset()
    yield sb
    if sb.alive():
        sb.clear_faults()
