"""The server's warm-up: what a first page needs is paid for at start-up, and rollups that are
missing (or of an older shape) are rebuilt in the background then, not by the first page."""

from __future__ import annotations

from core.metrics import refresher
from core.metrics.rollups import state
from core.warmup import warm
from tests.support.factories import at, make_member, make_payment


def test_warm_up_answers_the_first_pages_and_builds_missing_rollups(engine, session):
    make_payment(session, member=make_member(session), amount=1200, created_at=at("2026-03-02 10:00"))
    session.commit()
    assert state(engine) is None
    took = warm(engine, now=at("2026-03-09 18:43"))
    assert set(took) == {"imports", "rollups", "overview", "pages", "counts"}
    assert refresher.wait(timeout=120)
    built = state(engine)
    assert built is not None
    warm(engine, now=at("2026-03-09 18:44"))  # rollups in place: nothing more is asked for
    assert not refresher.busy()
    assert state(engine) == built
