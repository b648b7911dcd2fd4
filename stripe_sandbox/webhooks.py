"""Signed webhook delivery: every event POSTed to the configured URL and to registered endpoints.

The ``Stripe-Signature`` header is ``t=<unix time>,v1=<hex HMAC-SHA256 of "t.payload" with the
secret>``, which ``stripe.Webhook.construct_event`` verifies. Delivery runs on one background
thread in event order; a failed delivery is logged and not retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.request
from typing import Any

from stripe_sandbox.store import SandboxStore

log = logging.getLogger("stripe_sandbox.webhooks")


def signature(payload: str, secret: str, timestamp: int | None = None) -> str:
    t = int(timestamp if timestamp is not None else time.time())
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class WebhookDispatcher:
    def __init__(self, store: SandboxStore, url: str | None, secret: str | None) -> None:
        self.store = store
        self.url = url
        self.secret = secret or ""
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread: threading.Thread | None = None

    def enqueue(self, event: dict[str, Any]) -> None:
        if not self.url and not self.store.count("webhook_endpoint"):
            return
        self._queue.put(event)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
            self._thread.start()

    def _targets(self, event_type: str) -> list[tuple[str, str]]:
        out = [(self.url, self.secret)] if self.url else []
        for we in self.store.select("webhook_endpoint"):
            enabled = we.get("enabled_events") or ["*"]
            if we.get("status") == "enabled" and ("*" in enabled or event_type in enabled):
                out.append((we["url"], we["secret"]))
        return out

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            payload = json.dumps(event)
            for url, secret in self._targets(event["type"]):
                req = urllib.request.Request(url, data=payload.encode(), method="POST", headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": signature(payload, secret), "User-Agent": "Stripe/1.0 (+sandbox)"})
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        resp.read()
                except OSError as exc:
                    log.warning("webhook %s to %s failed: %s", event["id"], url, exc)
