"""The Stripe sandbox as a real subprocess for tests.

- ``sandbox`` (function fixture): one ``python -m cli sandbox`` process per test worker, started on
  first use on a free port with its own state file and API key, in its own process group (killed
  at the end of the session); every test gets it reset (no objects, no faults, no idempotency keys).
  The handle has ``.url``, ``.api_key``, ``.state_path``, ``.client()`` (a real ``stripe.StripeClient``
  pointed at it), ``.fault(...)``, ``.clear_faults()``, ``.reset()``.
  The fixture is registered in ``tests/conftest.py``.
- ``start_sandbox(state_path, ...)``: a private process (context manager) for tests that restart it
  or configure webhooks; ``.restart()`` keeps port and state file.
- ``gateway_client(sb)``: our own client (the gateway's) pointed at a sandbox.
- ``webhook_endpoint(engine, client)``: a webhook endpoint registered in the sandbox (context
  manager): a small HTTP server whose every delivery goes through the real receiver
  (``core.stripe_webhooks.receive``: verified, recorded in the ledger, not yet applied);
  ``.settle()`` waits until every event the sandbox emitted since has been delivered; ``on_new``
  is called after each new event is recorded (the server wakes its background pass there).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stripe
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.models.stripe_sync import StripeEvent
from core.stripe_gateway import ClientOptions, StripeClient, make_client
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_test_sandbox_tests_0123456789"


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


def gateway_client(sb: SandboxProcess, *, retries: int = 2) -> StripeClient:
    """Our own client (the gateway's), pointed at the sandbox."""
    return make_client(sb.api_key, api_base=sb.url,
                       options=ClientOptions(max_network_retries=retries, read_timeout=5, connect_timeout=2))


class WebhookEndpoint:
    """A webhook endpoint the sandbox delivers to; each delivery is received as production
    receives it (``receive``: verified and recorded, applied later by the background pass)."""

    def __init__(self, engine: Engine, client: stripe.StripeClient,
                 on_new: Callable[[], None] | None = None) -> None:
        self.engine, self.client, self.on_new = engine, client, on_new
        self.rejected: list[str] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from core.stripe_webhooks.receive import WebhookRejected, receive

                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    got = receive(sink.engine, body, self.headers.get("Stripe-Signature"), sink.secret)
                    status = 200
                    if got.new and sink.on_new is not None:
                        sink.on_new()  # as the server wakes its background pass
                except WebhookRejected as exc:
                    sink.rejected.append(str(exc))
                    status = 400
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-endpoint", daemon=True)
        self.thread.start()
        url = f"http://127.0.0.1:{self.server.server_address[1]}/stripe/webhook"
        endpoint = client.v1.webhook_endpoints.create({"url": url, "enabled_events": ["*"]})
        self.endpoint_id, self.secret = endpoint.id, str(endpoint.secret)
        self.since = {e.id for e in client.v1.events.list({"limit": 100}).auto_paging_iter()}

    def emitted(self) -> set[str]:
        """The ids of the events the sandbox emitted since the endpoint was registered."""
        return {e.id for e in self.client.v1.events.list({"limit": 100}).auto_paging_iter()} - self.since

    def settle(self, timeout: float = 30.0) -> set[str]:
        """Wait until every event emitted so far is in our ledger; returns their ids."""
        deadline = time.monotonic() + timeout
        while True:
            wanted = self.emitted()
            with Session(self.engine) as s:
                have = s.scalar(select(func.count()).select_from(StripeEvent).where(StripeEvent.id.in_(wanted)))
            if have == len(wanted):
                return wanted
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(wanted) - (have or 0)} of {len(wanted)} events not delivered "
                                     f"in {timeout:.0f} s (rejected: {self.rejected})")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.v1.webhook_endpoints.delete(self.endpoint_id)
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def webhook_endpoint(engine: Engine, client: stripe.StripeClient,
                     on_new: Callable[[], None] | None = None) -> Iterator[WebhookEndpoint]:
    endpoint = WebhookEndpoint(engine, client, on_new)
    try:
        yield endpoint
    finally:
        endpoint.close()


def import_demo_world(sb: SandboxProcess, *, seed: int, members: int, now: Any) -> list[dict[str, Any]]:
    """A demo world's Stripe objects and events loaded into the sandbox's state, as the demo command
    loads them; returns the objects (to pick a member from)."""
    from demo import iter_events, iter_stripe_objects
    from demo.world import World as DemoWorld
    from stripe_sandbox.store import SandboxStore

    world = DemoWorld(seed=seed, members=members, now=now)
    objects = list(iter_stripe_objects(world))
    store = SandboxStore(sb.state_path)
    store.import_objects(objects)
    store.import_events(iter_events(world))
    store.close()
    return objects

