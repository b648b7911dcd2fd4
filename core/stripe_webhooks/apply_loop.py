"""Handling recorded webhook events in the background, one pass at a time.

The receiver only records; this loop, one thread per server process, wakes on each new event and
runs the ledger through ``process_pending`` with an ``Applier`` (the pull sync's own path), under
the sync's lock, so a pass never runs beside a sync run or another replica's pass. When the lock
is busy the pass waits and tries again: a pull sync that started before the event was recorded
may not pick it up. After a pass that handled events, the metrics rollups are refreshed from the
earliest event's time by the background refresher (``core.metrics.refresher``), as after a staff
change.

A pass that fails (Stripe unreachable while fetching a missing parent, say) leaves the events in
the ledger with their error; the next wake-up or the next pull sync retries them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.models.stripe_sync import StripeEvent
from core.settings import SettingsError
from core.stripe_gateway import GatewayError, StripeClient
from core.sync import locks
from core.sync.apply import Applier
from core.sync.process import process_pending
from core.sync.run import LOCK_NAME
from core.timeutil import utc_now

log = logging.getLogger(__name__)

FIRST_RETRY = 0.5  # seconds after a busy lock or a failed pass; doubles up to MAX_RETRY
MAX_RETRY = 10.0


def _earliest_new(engine: Engine) -> datetime | None:
    """The earliest unprocessed event not yet tried (an event that keeps failing is left out, so
    it does not drag every refresh back to its own date); None when nothing is pending."""
    with Session(engine) as s:
        pending = StripeEvent.processed_at.is_(None)
        untried = s.scalar(select(func.min(StripeEvent.created_at)).where(pending, StripeEvent.last_error.is_(None)))
        return untried or s.scalar(select(func.min(StripeEvent.created_at)).where(pending))


def apply_pending(engine: Engine, client: StripeClient) -> int:
    """One pass: handle every unprocessed event under the sync lock; returns how many were
    handled. ``LockBusy`` when a sync run or another pass holds the lock; ``GatewayError`` when
    Stripe failed mid-pass (what was handled is committed)."""
    lock = locks.acquire(engine, LOCK_NAME)
    try:
        since = _earliest_new(engine)
        if since is None:
            return 0
        result = process_pending(engine, Applier(client, now=utc_now()), on_batch=lambda _d, _t: lock.heartbeat())
    finally:
        lock.release()
    if result.handled:
        from core.metrics import refresher

        refresher.request(engine, since, what="webhook events")
    if result.failed:
        log.warning("webhook pass: %d event(s) failed; the next pass or sync retries them", result.failed)
    return result.handled


class ApplyLoop:
    """A daemon thread running ``apply_pending`` whenever ``wake()`` is called (and once at start,
    for events a previous process recorded but did not handle)."""

    def __init__(self, engine: Engine, client_factory: Callable[[], StripeClient]) -> None:
        self.engine = engine
        self._client_factory = client_factory
        self._client: StripeClient | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def start(self) -> None:
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="stripe-webhook-apply", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = FIRST_RETRY
        unapplied: str | None = None  # the missing setting last said (said once, not every retry)
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                return
            self._wake.clear()
            try:
                if self._client is None:
                    self._client = self._client_factory()
                apply_pending(self.engine, self._client)
                self.passes += 1
                delay = FIRST_RETRY
                unapplied = None
                continue
            except locks.LockBusy:
                pass  # a sync run or another replica is working; try again shortly
            except GatewayError as exc:
                log.warning("webhook pass stopped: %s", exc.sentence)
            except SettingsError as exc:  # no Stripe key: events wait in the ledger for the sync
                if str(exc) != unapplied:  # retried every 10 s: one line, not 8,640 a day
                    log.warning("webhook events recorded but not applied: %s", exc)
                    unapplied = str(exc)
            except Exception:
                log.exception("webhook pass failed")
            # Wait, then try again (sooner if a new event arrives and the cause is gone).
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, MAX_RETRY)
            self._wake.set()
