"""Planner statistics are the product's job, not the operator's.

After a bulk write (a demo load, a full Stripe backfill, a rollup rebuild) the tables' sizes and
value spreads have changed by orders of magnitude; a query planner working from the old figures
(or none: SQLite keeps none until ANALYZE, PostgreSQL waits for autovacuum, which may be off)
picks nested loops over millions of rows. ``analyze`` gathers them at once (SQLite reads every
index: 30 s for the 2M payments of M on a busy machine; PostgreSQL samples).

On PostgreSQL it is ``VACUUM (ANALYZE)``: a bulk writer leaves dead row versions behind (the
demo loader's one-pass fills rewrite every invoice and subscription once: 18.5M dead invoice rows
at a million members), and until a VACUUM marks the pages all-visible no index-only scan works.
Autovacuum would get there some time, or never where it is off: at a million members the Failed
payments page's reads of the subscriptions took 300 ms before and 86 ms after.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)


def analyze(engine: Engine, *, why: str) -> float:
    """ANALYZE the whole database (PostgreSQL: VACUUM (ANALYZE)), outside any transaction;
    returns the seconds it took. A failure is logged and never undoes the write that asked for it."""
    started = time.perf_counter()
    statement = "VACUUM (ANALYZE)" if engine.dialect.name == "postgresql" else "ANALYZE"
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(statement))
    except Exception:
        log.exception("ANALYZE after %s failed (the planner keeps its old statistics)", why)
        return time.perf_counter() - started
    took = time.perf_counter() - started
    log.info("planner statistics gathered (%s) after %s in %.2fs", statement, why, took)
    return took
