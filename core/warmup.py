"""Pay a first page's costs before the server says it is healthy.

A person signing in after a restart should not wait for imports (pandas and the metric modules:
about a second), for the database's first reads to come off the disk, or for rollups that a
migration or a settings change left to be rebuilt. ``warm(engine)`` does those once, at start-up:
it imports what the pages import, reads the rollups' state (asking the background refresher for
a rebuild when they are missing, stale or of an older shape: the only writer here, and not a
page), and answers the Overview as it opens (month to date by day, up to this minute) and the
finance pages' default question, so their data and indexes are in memory. The Overview's answer
is kept for the first visitor (``core.metrics.kept``, which the keeper thread then keeps fresh);
the other pages' caches fill on the first visit, from warm memory.

The server's start calls it before reporting healthy (``cli/run.py``, or whatever serves
the app); a failure is logged and never stops the start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger(__name__)


def warm(engine: Engine, *, now: datetime | None = None) -> dict[str, float]:
    """Seconds each step took (``imports``, ``rollups``, ``overview``, ``pages``, ``counts``)."""
    took: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            fn()
        except Exception:
            log.exception("warm-up step %s failed (the first page pays for it instead)", name)
        took[name] = time.perf_counter() - started

    def imports() -> None:
        import pandas  # noqa: F401  (the pages' tables)

        import core.metrics.bundles  # noqa: F401
        import core.metrics.overview_counts  # noqa: F401
        from core.metrics import list_metrics

        list_metrics()  # every metric module registered

    step("imports", imports)
    step("rollups", lambda: _rollups_ready(engine))
    from core.settings.business import load
    from core.timeutil import utc_now, zone

    at = (now or utc_now()).replace(second=0, microsecond=0)
    bs = load(engine)
    today = at.astimezone(zone(bs.business_timezone)).date()

    def overview() -> None:
        from core.metrics import kept

        kept.overview(engine, kept.DEFAULT_PERIOD, now or utc_now())

    def pages() -> None:
        from core.metrics import Query, page_bundle

        q = Query.make(engine, start=date(today.year - 1, today.month, 1), end=today + timedelta(days=1), now=at)
        for page in ("revenue", "churn", "failed_payments"):
            page_bundle(engine, page, q)

    def counts() -> None:
        from core.metrics import overview_counts

        overview_counts.members_by_tier_status(engine)
        overview_counts.mrr_by_currency(engine)
        overview_counts.payments_in_month(engine, now=at, tz=bs.business_timezone)

    step("overview", overview)
    step("pages", pages)
    step("counts", counts)
    log.info("warm-up done: %s", ", ".join(f"{k} {v:.2f}s" for k, v in took.items()))
    return took


def _rollups_ready(engine: Engine) -> None:
    """Ask for a rebuild in the background when the rollups cannot answer the business's questions."""
    from core.metrics import refresher
    from core.metrics.rollups import state
    from core.settings.business import load

    current, bs = state(engine), load(engine)
    if current is None or not current.matches(bs.business_timezone, bs):
        refresher.request(engine, None, what="the server start (rollups missing, stale or of an older shape)")
