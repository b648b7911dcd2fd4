"""Rollup refreshes at the same moment (a sync and staff changes) leave the rollups as one refresh
would: an incremental refresh moves stored rows by a difference it computed, so without the
refresh lock two would both apply theirs (this test fails then, on both databases)."""
import threading
from datetime import timedelta

from core.db import make_engine
from core.metrics.rollups import refresh
from core.models import MembershipChange, Subscription
from tests.support.db import rollup_snapshot
from tests.support.factories import make_change
from tests.support.worlds import RANDOM_NOW as NOW
from tests.support.worlds import build_random_world


def test_three_refreshes_at_once_equal_a_full_rebuild(engine, session):
    build_random_world(session, 41, members=60)
    refresh(engine, now=NOW)
    since = NOW - timedelta(days=20)
    build_random_world(session, 42, members=10, after=since)
    sids = [r[0] for r in session.query(MembershipChange.subscription_id).distinct().limit(5)]
    for sid in sids:
        make_change(session, subscription=session.get(Subscription, sid), effective_at=NOW - timedelta(days=3),
                    mrr_after=0, kind="canceled", to_status="canceled")
    session.commit()
    url = engine.url.render_as_string(hide_password=False)
    errors = []

    def run():
        eng = make_engine(url)
        try:
            refresh(eng, since, now=NOW)
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    concurrent = rollup_snapshot(engine)
    refresh(engine, now=NOW)
    assert rollup_snapshot(engine) == concurrent
