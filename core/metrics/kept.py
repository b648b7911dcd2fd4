"""The Overview's cards, ready before anyone asks.

The Overview is every role's first page. Its cards compare the month so far with the same part
of last month, to the minute, and that previous part ends inside a day the rollups hold only
whole: its members are swept one by one (about a second at a million members). Recomputing that
for each person, each minute, is what made the first page slow.

So this process keeps the answers, shared by every session it serves:

- ``overview(engine, period, now)`` hands out the answer computed at most ``FRESH`` before
  ``now`` for the same question (period, time zone, business settings, and with them the FX
  rates' digest), or computes it. Two people asking at once share one computation: the second
  waits for the first's answer. A saved rate (or setting) is another question: the next visitor
  gets numbers at the new rates, not the kept answer of the minute.
- ``Keeper``, a thread started with the server, answers the default period ("Month to date")
  every ``FRESH``, so the person who opens the Overview finds it ready, after a restart too
  (the warm-up's answer is the first one kept). Another period someone chose within ``WANTED``
  is kept fresh too: "Year to date" took 5 s in the browser at a million members each time it was
  chosen after its minute (the same part of last year is swept to the minute); now only the
  first choice computes it. Not every period as soon as the Overview is opened: that was about
  1.4 s of CPU in one go at a million members, which after a restart slowed the first page
  (1.2-1.9 s in the browser instead of 0.7-1.05) and, with ten people at work, made the slowest
  pages slower. At night, with nobody asking, only the default period is kept.

The numbers are as of the instant they were computed (the page shows it): at most a minute
old. The counts below the cards, the member page and every list read the rows when asked.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from core.daemon import Daemon
from core.metrics import page_bundle, source
from core.metrics.types import Query
from core.settings.business import BusinessSettings, load
from core.timeutil import utc_now, zone

if TYPE_CHECKING:
    from core.metrics.bundles import PageBundle

log = logging.getLogger(__name__)

FRESH = timedelta(seconds=60)
WANTED = timedelta(minutes=15)
DEFAULT_PERIOD = "mtd"
PERIODS = ("mtd", "30d", "90d", "ytd")  # the Overview's choices (``period_bounds``)
_KEEP = 16  # answers kept at most (a few periods x a settings change or two)


def period_bounds(period: str, now: datetime, tz: str) -> tuple[date, date, str]:
    """Local dates [start, end) and a granularity for a period: "mtd" (month to date), "30d", "90d"
    (the last 30 or 90 days) or "ytd" (year to date)."""
    today = now.astimezone(zone(tz)).date()
    end = today + timedelta(days=1)
    if period == "30d":
        return end - timedelta(days=30), end, "day"
    # The cards' figures do not depend on the bucket size (buckets are cut to the range); year to
    # date reads month rows (a year of day rows per segment costs a second at 5,000 members).
    if period == "90d":
        return end - timedelta(days=90), end, "day"
    if period == "ytd":
        return today.replace(month=1, day=1), end, "month"
    return today.replace(day=1), end, "day"


def overview_query(source: Engine | BusinessSettings, period: str, now: datetime) -> Query:
    """The Overview's question for ``period`` as of ``now``, with the business settings given or
    in force (read from the engine: two small reads, the settings and the FX rates' state)."""
    bs = source if isinstance(source, BusinessSettings) else load(source)
    start, end, granularity = period_bounds(period, now, bs.business_timezone)
    return Query.make(bs, start=start, end=end, now=now, granularity=granularity)


@dataclass(frozen=True)
class Answer:
    bundle: PageBundle
    as_of: datetime  # the instant the numbers were computed as of


_Key = tuple[Any, ...]
_lock = threading.Lock()
_answers: dict[_Key, Answer] = {}
_computing: dict[_Key, threading.Lock] = {}
_asked: dict[tuple[str, str], datetime] = {}  # (database, period) -> when someone last asked for it


def overview(engine: Engine, period: str, now: datetime | None = None) -> Answer:
    """The Overview's numbers for ``period``, as of ``now`` or at most ``FRESH`` before it; the
    keeper keeps ``period`` fresh for ``WANTED`` from now."""
    with _lock:
        _asked[(_engine_key(engine), period)] = utc_now()
    return answer(engine, overview_query(engine, period, now or utc_now()))


def wanted(engine: Engine, at: datetime) -> tuple[str, ...]:
    """The periods to keep fresh at ``at``: the default one, and each other one asked for within
    ``WANTED``."""
    key = _engine_key(engine)
    with _lock:
        asked = {period for (db, period), when in _asked.items() if db == key and at - when <= WANTED}
    return tuple(p for p in PERIODS if p == DEFAULT_PERIOD or p in asked)


def answer(engine: Engine, query: Query, *, fresh: timedelta = FRESH) -> Answer:
    """The Overview bundle of ``query`` computed as of ``query.now`` or up to ``fresh`` before."""
    assert query.now is not None
    now = query.now
    key = _key(engine, query)
    kept = _fresh(key, now, fresh)
    if kept is not None:
        return kept
    with _lock:
        computing = _computing.setdefault(key, threading.Lock())
    with computing:  # one computation per question; whoever waited here takes its answer
        kept = _fresh(key, now, fresh)
        if kept is not None:
            return kept
        got = Answer(page_bundle(engine, "overview", query), now)
        with _lock:
            _answers[key] = got
            for old in sorted(_answers, key=lambda k: _answers[k].as_of)[:max(0, len(_answers) - _KEEP)]:
                del _answers[old]
                _computing.pop(old, None)
        return got


def _fresh(key: _Key, now: datetime, fresh: timedelta) -> Answer | None:
    kept = _latest(key)
    if kept is not None and now - fresh <= kept.as_of <= now:
        return kept
    return None


def _latest(key: _Key) -> Answer | None:
    with _lock:
        return _answers.get(key)


def _key(engine: Engine, query: Query) -> _Key:
    """The question without its instant. ``q.settings`` carries the FX rates' digest: an answer
    is never handed out for rates other than those it was converted at. Whether the rollups
    answer it too: an answer computed while they were being rebuilt after a settings change (from
    the raw rows, MRR still by the previous grace days) was handed out for a minute after the
    rebuild, beside pages that already showed the new figures."""
    q = query
    usable = source.usable_state(engine, q) is not None
    return (_engine_key(engine), q.start, q.end, q.granularity, q.tz, q.currency, q.filters, q.settings, usable)


def _engine_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def forget() -> None:
    """Drop every kept answer (tests; a settings or rate change needs nothing: it changes the question)."""
    with _lock:
        _answers.clear()
        _computing.clear()
        _asked.clear()


class Keeper(Daemon):
    """A daemon thread answering the Overview's wanted periods (``wanted``) every ``every``,
    ahead of visitors: whichever is due first, one at a time."""

    name = "overview-keeper"

    def __init__(self, engine: Engine, every: timedelta = FRESH) -> None:
        super().__init__()
        self.engine = engine
        self.every = every

    def _run(self) -> None:
        took: dict[str, float] = {}  # seconds each period's last answer took (a guess until the first)
        failing = False
        while not self._stop.is_set():
            try:
                now = utc_now()
                queries = {period: overview_query(self.engine, period, now) for period in wanted(self.engine, now)}
                dues = {period: self._due(query, took.get(period, 1.0), now) for period, query in queries.items()}
                period = min(dues, key=dues.__getitem__)
                wait = (dues[period] - utc_now()).total_seconds()
                if wait > 0:
                    self._stop.wait(min(wait, 5.0))  # a period asked for meanwhile may be due sooner
                    continue  # asked again: the settings (and so the questions) may have changed
                started = utc_now()
                answer(self.engine, replace(queries[period], now=started), fresh=timedelta(0))
                took[period] = (utc_now() - started).total_seconds()
                if failing:
                    log.info("overview keeper: the cards are computed again")
                failing = False
            except Exception as exc:  # a database away for a moment: a visitor computes on their own
                if not failing:  # said once, not every minute
                    log.warning("overview keeper: the cards could not be computed (%s); trying every minute",
                                type(exc).__name__)
                failing = True
                self._stop.wait(self.every.total_seconds())

    def _due(self, query: Query, took: float, now: datetime) -> datetime:
        """When ``query`` is next to be answered: early enough for the answer to land before the
        kept one stops being fresh (at once when none is kept)."""
        kept = _latest(_key(self.engine, query))
        return kept.as_of + self.every - timedelta(seconds=2 * took + 1) if kept else now
