"""The sandbox's HTTP server: Stripe's wire protocol over ``Api``, on 127.0.0.1 only.

Guarantees: Bearer-key auth with Stripe's 401 error; requests are served one at a time against
the store (a lock; delays from faults happen outside it); ``Idempotency-Key`` on a POST replays
the first answer for 24 h and refuses the same key with other parameters (400
``idempotency_error``); faults from the control API under ``/_sandbox/`` (429/500/any status,
dropped connections, delays, "apply then 500") are applied before the request reaches the API.
Every API request is noted in a request log (method, path, status; the last ``REQUEST_LOG_SIZE``)
that ``GET /_sandbox/requests`` answers and ``DELETE /_sandbox/requests`` empties, so a test can
count what a flow asked Stripe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from stripe_sandbox import forms
from stripe_sandbox.api import Api
from stripe_sandbox.errors import StripeError, unauthorized
from stripe_sandbox.store import SandboxStore
from stripe_sandbox.webhooks import WebhookDispatcher

log = logging.getLogger("stripe_sandbox")
IDEMPOTENCY_TTL = 24 * 3600
_NOT_STARTED = ("parameter_unknown", "parameter_missing", "parameter_invalid")
REQUEST_LOG_SIZE = 10_000


@dataclass
class Fault:
    path_prefix: str = "/"
    method: str | None = None
    mode: str = "status"  # status | drop | delay | apply_then_500 | apply_then_drop | apply_then_garble | apply_then_delay
    status: int = 500
    times: int | None = 1  # None: every matching request
    skip: int = 0  # let this many matching requests through first
    seconds: float = 0.0
    should_retry: bool | None = None
    hits: int = 0

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class Sandbox:
    """The server's state shared by all handler threads."""

    def __init__(self, store: SandboxStore, api_key: str, *, webhook_url: str | None = None,
                 webhook_secret: str | None = None) -> None:
        self.store = store
        self.api_key = api_key
        self.api = Api(store)
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.fault_lock = threading.Lock()
        # Set by clear_faults: a request held by a delay fault goes on at once (a test that holds a
        # request while something else happens releases it when that is done, not after a timeout).
        self.cleared = threading.Event()
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.webhooks = WebhookDispatcher(store, webhook_url, webhook_secret)
        self.api.listeners.append(self.webhooks.enqueue)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.fault_lock:
            for fault in self.faults:
                if not path.startswith(fault.path_prefix) or (fault.method and fault.method.upper() != method):
                    continue
                fault.hits += 1
                if fault.hits <= fault.skip:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def add_fault(self, spec: dict[str, Any]) -> Fault:
        mode = str(spec.get("mode") or "status")
        if mode not in ("status", "drop", "delay", "apply_then_500", "apply_then_drop", "apply_then_garble",
                        "apply_then_delay"):
            raise StripeError(400, "invalid_request_error", f"Unknown fault mode: {mode}.", param="mode")
        times = spec.get("times", 1)
        fault = Fault(
            path_prefix=str(spec.get("path_prefix") or "/"), method=spec.get("method") or None, mode=mode,
            status=int(spec.get("status") or 500), times=None if times in (None, "", 0, "0", -1, "-1") else int(times),
            skip=int(spec.get("skip") or 0), seconds=float(spec.get("seconds") or 0),
            should_retry=spec.get("should_retry"),
        )
        with self.fault_lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.fault_lock:
            self.faults.clear()
            self.cleared.set()
            self.cleared = threading.Event()

    def note_request(self, method: str, path: str, status: int | None) -> None:
        """One API request in the log (``status`` None: the connection was dropped)."""
        with self.fault_lock:
            self.requests.append({"method": method, "path": path, "status": status})


def fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {"error": {"type": "invalid_request_error", "code": "rate_limit",
                          "message": "Request rate limit exceeded. Learn more about rate limits here "
                                     "https://stripe.com/docs/rate-limits.",
                          "doc_url": "https://stripe.com/docs/error-codes/rate-limit"}}
    if status >= 500:
        return {"error": {"type": "api_error", "message": "An unknown error occurred while processing your request."}}
    if status == 401:
        return unauthorized(None).payload()
    if status == 402:
        return StripeError(402, "card_error", "Your card was declined.", code="card_declined",
                           decline_code="generic_decline").payload()
    return {"error": {"type": "invalid_request_error", "message": f"Injected fault ({status})."}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY, keep-alive requests wait ~40 ms for a delayed ACK (Nagle's algorithm).
    disable_nagle_algorithm = True
    server_version = "MemberdeskStripeSandbox/1.0"
    sandbox: Sandbox  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -- plumbing ----------------------------------------------------------------------------
    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Request-Id", "req_sandbox")
        self.send_header("Stripe-Version", "2026-10-28.endive")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _key(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if auth.lower().startswith("basic "):
            import base64
            try:
                return base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except ValueError:
                return None
        return None

    def _serve(self, method: str) -> None:
        sb = self.sandbox
        started = time.monotonic()
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        key = self._key()
        if key != sb.api_key:
            self._send(401, unauthorized(key).payload(), {"WWW-Authenticate": 'Basic realm="Stripe"'})
            return
        if url.path.startswith("/_sandbox/"):
            self._control(method, url.path, raw)
            return
        fault = sb.take_fault(method, url.path)
        if fault is not None:
            if fault.mode == "drop":
                log.info("fault: dropped %s %s", method, url.path)
                sb.note_request(method, url.path, None)
                self._drop()
                return
            if fault.mode == "delay":
                sb.cleared.wait(fault.seconds)
            elif fault.mode == "status":
                fault_headers: dict[str, str] = {}
                if fault.should_retry is not None:
                    fault_headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
                log.info("fault: %s %s answered %s", method, url.path, fault.status)
                sb.note_request(method, url.path, fault.status)
                self._send(fault.status, fault_body(fault.status), fault_headers)
                return
        try:
            params = forms.parse(url.query)
            if method == "POST" and raw:
                params.update(forms.parse(raw))
        except StripeError as exc:
            sb.note_request(method, url.path, exc.status)
            self._send(exc.status, exc.payload())
            return
        idem = self.headers.get("Idempotency-Key") if method == "POST" else None
        headers: dict[str, str] = {}
        with sb.lock:
            status, body = self._answer(method, url.path, params, idem, key, headers)
            headers.setdefault("Request-Id", str(sb.api.request_ctx.get("id") or "req_sandbox"))
        if fault is not None and fault.mode == "apply_then_delay":
            # Applied, its webhooks on their way, the answer held: what a slow network gives a
            # client whose webhook endpoint hears of its write first.
            log.info("fault: %s %s applied, answer held up to %.1f s", method, url.path, fault.seconds)
            sb.cleared.wait(fault.seconds)
        if fault is not None and fault.mode == "apply_then_500":
            log.info("fault: %s %s applied, answered 500", method, url.path)
            status, body = 500, fault_body(500)
        elif fault is not None and fault.mode == "apply_then_drop":
            log.info("fault: %s %s applied, connection dropped", method, url.path)
            sb.note_request(method, url.path, None)
            self._drop()
            return
        elif fault is not None and fault.mode == "apply_then_garble":
            # A 200 whose object lacks its fields: what a client must survive from a proxy or a bug.
            log.info("fault: %s %s applied, answered an object without its fields", method, url.path)
            status, body = 200, {"object": body.get("object") if isinstance(body, dict) else None}
        log.debug("%s %s -> %s in %.1f ms", method, url.path, status, (time.monotonic() - started) * 1000)
        sb.note_request(method, url.path, status)
        self._send(status, body, headers)

    def _answer(self, method: str, path: str, params: dict[str, Any], idem: str | None, key: str,
                headers: dict[str, str]) -> tuple[int, Any]:
        sb = self.sandbox
        if not idem:
            return sb.api.handle(method, path, params)
        digest = hashlib.sha256(json.dumps([method, path, params], sort_keys=True).encode()).hexdigest()
        hit = sb.store.idem_get(key, idem)
        now = time.time()
        if hit is not None and now - hit[5] < IDEMPOTENCY_TTL:
            h_method, h_path, h_hash, h_status, h_body, _ = hit
            if (h_method, h_path, h_hash) != (method, path, digest):
                return 400, {"error": {
                    "type": "idempotency_error",
                    "message": f"Keys for idempotent requests can only be used with the same parameters they were "
                               f"first used with. Try using a key other than '{idem}' if you meant to execute a "
                               f"different request."}}
            headers["Idempotent-Replayed"] = "true"
            headers["Idempotency-Key"] = idem
            return h_status, json.loads(h_body)
        status, body = sb.api.handle(method, path, params, idempotency_key=idem)
        code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
        # Like Stripe: a request that failed parameter validation never started, so nothing is saved.
        if status != 429 and status < 500 and code not in _NOT_STARTED:
            sb.store.idem_put(key, idem, method, path, digest, status, json.dumps(body), now)
        headers["Idempotency-Key"] = idem
        return status, body

    def _settings(self) -> dict[str, Any]:
        store = self.sandbox.store
        return {"object": "sandbox.settings", "after_retries": store.meta_get("after_retries", "cancel"),
                "event_retention_days": int(store.meta_get("event_retention_days", "0") or 0)}

    def _control(self, method: str, path: str, raw: str) -> None:
        sb = self.sandbox
        try:
            spec: dict[str, Any] = {}
            if raw.strip():
                spec = json.loads(raw) if raw.lstrip().startswith("{") else dict(parse_qsl(raw))
            if path == "/_sandbox/faults" and method == "POST":
                fault = sb.add_fault(spec)
                self._send(200, {"object": "sandbox.fault", **fault.public()})
            elif path == "/_sandbox/faults" and method == "DELETE":
                sb.clear_faults()
                self._send(200, {"object": "sandbox.faults", "data": []})
            elif path == "/_sandbox/faults" and method == "GET":
                with sb.fault_lock:
                    data = [f.public() for f in sb.faults]
                self._send(200, {"object": "sandbox.faults", "data": data})
            elif path == "/_sandbox/requests" and method == "GET":
                with sb.fault_lock:
                    data = list(sb.requests)
                self._send(200, {"object": "sandbox.requests", "data": data})
            elif path == "/_sandbox/requests" and method == "DELETE":
                with sb.fault_lock:
                    sb.requests.clear()
                self._send(200, {"object": "sandbox.requests", "data": []})
            elif path == "/_sandbox/settings" and method == "POST":
                with sb.lock:
                    if "after_retries" in spec:
                        if spec["after_retries"] not in ("cancel", "unpaid", "past_due"):
                            raise ValueError("after_retries must be cancel, unpaid or past_due")
                        sb.store.meta_set("after_retries", spec["after_retries"])
                    if "event_retention_days" in spec:
                        days = int(spec["event_retention_days"] or 0)
                        if days < 0:
                            raise ValueError("event_retention_days must be 0 (keep all) or more")
                        sb.store.meta_set("event_retention_days", str(days))
                self._send(200, self._settings())
            elif path == "/_sandbox/settings" and method == "GET":
                self._send(200, self._settings())
            elif path == "/_sandbox/reset" and method == "POST":
                with sb.lock:
                    sb.store.reset()
                sb.clear_faults()
                with sb.fault_lock:
                    sb.requests.clear()
                self._send(200, {"object": "sandbox.reset", "ok": True})
            elif path == "/_sandbox/health" and method == "GET":
                self._send(200, {"object": "sandbox.health", "ok": True, "objects": sb.store.count()})
            else:
                self._send(404, {"error": {"type": "invalid_request_error",
                                           "message": f"Unrecognized control URL ({method}: {path})."}})
        except (ValueError, TypeError) as exc:
            self._send(400, {"error": {"type": "invalid_request_error", "message": f"Invalid control request: {exc}"}})
        except StripeError as exc:
            self._send(exc.status, exc.payload())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(store: SandboxStore, api_key: str, port: int, *, webhook_url: str | None = None,
                webhook_secret: str | None = None) -> tuple[_Server, Sandbox]:
    """A server bound to 127.0.0.1:port (0 picks a free port); call ``serve_forever()``."""
    sandbox = Sandbox(store, api_key, webhook_url=webhook_url, webhook_secret=webhook_secret)
    handler = type("BoundHandler", (Handler,), {"sandbox": sandbox})
    server = _Server(("127.0.0.1", port), handler)
    return server, sandbox
