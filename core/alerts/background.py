"""The alert rules evaluated beside the Alerts page, not inside its run.

The Alerts page evaluates the rules when the last evaluation is over five minutes old (cron may not
run, as on a laptop). At a million members an evaluation takes one to four seconds (the rules read
a day and several weeks of payments), and the manager who opened the page used to wait for it.

Guarantees:
- ``start_if_stale(engine, ...)`` starts an evaluation in this process's one background thread
  when the last one is older than ``max_age_minutes`` and none is running here, and returns it (a
  ``Future`` of ``evaluate``'s result); it returns the one already running, or None when the
  results are fresh. It never waits for the evaluation.
- At most one evaluation runs at a time in a process. Across processes (replicas, the cron job)
  evaluations may overlap; ``evaluate`` is safe against that (a concurrent evaluator's alert is
  updated, not opened twice), at worst the work is done twice.
- An evaluation that fails is logged once (``evaluate`` logs each broken rule itself); its
  ``Future`` holds the exception for the page to say so, and is handed out again for
  ``RETRY_AFTER`` instead of starting another (a page that reruns when a check ends must not
  start one after another against a database that is away).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import Engine

from core.alerts.evaluate import EvaluationResult, evaluate, last_evaluated_at
from core.timeutil import ensure_aware, utc_now

log = logging.getLogger(__name__)

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts-evaluate")
_lock = threading.Lock()
_running: Future[EvaluationResult] | None = None
_ended_at = 0.0  # time.monotonic() when the last evaluation ended
RETRY_AFTER = 60.0  # seconds before a failed evaluation is tried again


def start_if_stale(engine: Engine, now: datetime | None = None, *, max_age_minutes: float = 5, smtp_url: str = "",
                   delivery_budget_seconds: float = 5.0, local_receiver: str = "") -> Future[EvaluationResult] | None:
    """The evaluation running in this process, started now if the last one is older than
    ``max_age_minutes``; None when the results are fresh and none is running."""
    global _running
    with _lock:
        if _running is not None and (not _running.done() or (
                _running.exception() is not None and time.monotonic() - _ended_at < RETRY_AFTER)):
            return _running
        now = ensure_aware(now or utc_now())
        last = last_evaluated_at(engine)
        if last is not None and now - last < timedelta(minutes=max_age_minutes):
            return None
        _running = _executor.submit(_evaluate, engine, smtp_url, delivery_budget_seconds, local_receiver)
        return _running


def running() -> bool:
    """An evaluation started by ``start_if_stale`` has not finished yet."""
    with _lock:
        return _running is not None and not _running.done()


def _evaluate(engine: Engine, smtp_url: str, delivery_budget_seconds: float, local_receiver: str) -> EvaluationResult:
    global _ended_at
    try:
        # The clock when it starts, not when it was asked for: the windows end at the present.
        return evaluate(engine, smtp_url=smtp_url, delivery_budget_seconds=delivery_budget_seconds,
                        local_receiver=local_receiver)
    except Exception as exc:
        log.warning("alert rules: the evaluation beside the page failed (%s)", type(exc).__name__)
        raise
    finally:
        _ended_at = time.monotonic()  # before the Future says it is done
