"""Bring the metric rollups up to date in the background, one refresh at a time.

The one way a write asks for fresh rollups: a staff change, a settings change and a pass of the
webhook apply loop each call ``request``. A write answers as soon as Stripe and our rows are written
and calls ``request``; a thread of this process then refreshes the rollups from the earliest
instant asked for. Requests that arrive while a refresh runs are merged into the next one, so a
burst of changes costs one or two refreshes, not one each. Across processes and replicas the
refresh itself takes the database's lock first (PostgreSQL: an advisory lock; SQLite: the write
lock), so refreshes never overlap: a second one waits, then moves the rows on from where the
first left them.

Pages never refresh: they read the rollups plus the rows written since (``core.metrics.source``)
and can say how far behind they are (``source.status``). ``wait`` lets the command line and
tests wait for the background work to finish.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy import Engine

log = logging.getLogger(__name__)

_FULL = object()  # a full rebuild was asked for (rollups missing, stale or of another version)
_cond = threading.Condition()
_pending: dict[str, tuple[Engine, object]] = {}  # engine url -> (engine, earliest since or _FULL)
_running: set[str] = set()


def request(engine: Engine, since: datetime | None, *, what: str) -> None:
    """Refresh the rollups from ``since`` (None: rebuild them) in the background; returns at once."""
    key = engine.url.render_as_string(hide_password=False)
    with _cond:
        _, earlier = _pending.get(key, (engine, None))
        if since is None or earlier is _FULL:
            merged: object = _FULL
        else:
            merged = since if earlier is None else min(since, earlier)  # type: ignore[type-var]
        _pending[key] = (engine, merged)
        if key not in _running:
            _running.add(key)
            threading.Thread(target=_work, args=(key,), name="metrics-refresher", daemon=True).start()
    log.info("metrics rollup refresh requested after %s", what)


def _work(key: str) -> None:
    from core.metrics.rollups import refresh, state

    while True:
        with _cond:
            item = _pending.pop(key, None)
            if item is None:
                _running.discard(key)
                _cond.notify_all()
                return
        engine, since = item
        try:
            current = state(engine)
            if since is _FULL:
                refresh(engine)
            elif current is None:
                # Never built: a write does not start a full build behind a person's back (it
                # would hold SQLite's write lock for minutes at size); the loader, the sync, the
                # command line or the server's warm-up builds them.
                log.info("metric rollups not built yet: left to the next full build")
            else:
                # From the last refresh's `now` at the latest: the refresh then moves only the
                # touched members' movement rows.
                refresh(engine, min(since, current.now))  # type: ignore[type-var, arg-type]
        except Exception:
            log.exception("metrics rollup refresh in the background failed; the next write or sync retries")


def busy() -> bool:
    with _cond:
        return bool(_running or _pending)


def wait(timeout: float | None = None) -> bool:
    """Block until no refresh is pending or running in this process; False on timeout."""
    with _cond:
        return _cond.wait_for(lambda: not _running and not _pending, timeout)
