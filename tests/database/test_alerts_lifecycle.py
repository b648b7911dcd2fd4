"""The alert lifecycle: one alert per rule and scope, repeats update it, people acknowledge,
snooze and resolve with a note (recorded as transitions and in the audit log), alerts resolve
themselves once clear for the set time, and two evaluators at once never open two alerts."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from core.alerts import (
    AlertError,
    acknowledge,
    alert_detail,
    configure_rule,
    evaluate,
    evaluate_if_stale,
    last_evaluated_at,
    list_alerts,
    open_alert_count,
    resolve,
    snooze,
)
from core.db import make_engine
from core.models import Alert, AlertTransition, AuditEntry
from core.permissions import Actor, PermissionDenied
from tests.support.factories import at, make_sync_run

NOW = at("2026-03-10 23:00")
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
MANAGER = ["manager"]


def stale_world(session) -> None:
    """A world where exactly one alert fires: stripe_stale/sync (the last sync ended 10 h ago)."""
    make_sync_run(session, started_at=NOW - 10 * HOUR, finished_at=NOW - 10 * HOUR)
    session.commit()


def the_alert(engine) -> dict:
    rows = list_alerts(engine)
    assert len(rows) == 1
    return rows[0]


def transitions(session, alert_id: int) -> list[tuple]:
    return [(t.from_status, t.to_status, t.actor, t.note) for t in session.scalars(
        select(AlertTransition).where(AlertTransition.alert_id == alert_id).order_by(AlertTransition.id))]


class TestOpenAndRepeat:
    def test_repeat_updates_the_one_open_alert(self, engine, session):
        stale_world(session)
        first = evaluate(engine, NOW, deliver=False)
        second = evaluate(engine, NOW + HOUR, deliver=False)
        assert len(first.opened) == 1 and second.opened == [] and second.updated == first.opened
        a = the_alert(engine)
        assert a["status"] == "open" and a["value"] == pytest.approx(11.0)
        assert a["opened_at"] == NOW and a["last_fired_at"] == NOW + HOUR
        assert transitions(session, a["id"]) == [(None, "open", "system:alerts", a["hint"].replace("11.0", "10.0"))]
        assert open_alert_count(engine) == 1
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "alert.open")) == 1

    def test_same_now_twice_is_idempotent(self, engine, session):
        stale_world(session)
        evaluate(engine, NOW, deliver=False)
        evaluate(engine, NOW, deliver=False)
        assert session.scalar(select(func.count()).select_from(Alert)) == 1
        assert session.scalar(select(func.count()).select_from(AlertTransition)) == 1

    def test_last_evaluation_time_is_kept(self, engine, session):
        assert last_evaluated_at(engine) is None
        evaluate(engine, NOW, deliver=False)
        assert last_evaluated_at(engine) == NOW
        assert evaluate_if_stale(engine, NOW + timedelta(minutes=2)) is None
        assert evaluate_if_stale(engine, NOW + timedelta(minutes=6)) is not None
        assert last_evaluated_at(engine) == NOW + timedelta(minutes=6)


class TestPeopleActing:
    def test_acknowledge_snooze_resolve_with_notes(self, engine, session):
        stale_world(session)
        evaluate(engine, NOW, deliver=False)
        aid = the_alert(engine)["id"]
        acknowledge(engine, aid, actor=Actor.of("maria", MANAGER), note="looking", now=NOW + HOUR)
        snooze(engine, aid, actor=Actor.of("maria", MANAGER), hours=2, note="sync job restarting", now=NOW + 2 * HOUR)
        assert open_alert_count(engine) == 0  # snoozed on purpose
        resolve(engine, aid, actor=Actor.of("maria", MANAGER), note="fixed the API key", now=NOW + 3 * HOUR)
        assert transitions(session, aid)[1:] == [
            ("open", "acknowledged", "maria", "looking"),
            ("acknowledged", "snoozed", "maria", "sync job restarting"),
            ("snoozed", "resolved", "maria", "fixed the API key"),
        ]
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.actor == "maria")
                                  .order_by(AuditEntry.id)).all()
        assert actions == ["alert.acknowledged", "alert.snoozed", "alert.resolved"]
        detail = alert_detail(engine, aid)
        assert detail["status"] == "resolved" and detail["resolved_at"] == NOW + 3 * HOUR
        # history is searchable by the notes people wrote
        assert [r["id"] for r in list_alerts(engine, search="API KEY")] == [aid]
        assert list_alerts(engine, search="nothing like this") == []

    def test_the_same_press_twice_is_done_once(self, engine, session):
        # A double click on Resolve sent it twice; the repeat is answered as the first, not refused.
        stale_world(session)
        evaluate(engine, NOW, deliver=False)
        aid = the_alert(engine)["id"]
        maria = Actor.of("maria", MANAGER)
        resolve(engine, aid, actor=maria, note="fixed the API key", now=NOW + HOUR)
        resolve(engine, aid, actor=maria, note="fixed the API key", now=NOW + HOUR + 2 * timedelta(seconds=1))
        assert transitions(session, aid)[1:] == [("open", "resolved", "maria", "fixed the API key")]
        # Not a repeat: another note, or a minute later, is refused as before.
        with pytest.raises(AlertError, match="is resolved"):
            resolve(engine, aid, actor=maria, note="another reason", now=NOW + HOUR + MINUTE)
        with pytest.raises(AlertError, match="is resolved"):
            resolve(engine, aid, actor=maria, note="fixed the API key", now=NOW + HOUR + 2 * MINUTE)

    def test_roles_notes_and_states_are_checked(self, engine, session):
        stale_world(session)
        evaluate(engine, NOW, deliver=False)
        aid = the_alert(engine)["id"]
        with pytest.raises(PermissionDenied):
            resolve(engine, aid, actor=Actor.of("sam", ["support"]), note="x")
        with pytest.raises(AlertError, match="note"):
            resolve(engine, aid, actor=Actor.of("maria", MANAGER), note="  ")
        with pytest.raises(AlertError, match="Snooze for"):
            snooze(engine, aid, actor=Actor.of("maria", MANAGER), hours=0, note="x")
        with pytest.raises(AlertError, match="no alert number 999"):
            acknowledge(engine, 999, actor=Actor.of("maria", MANAGER))
        resolve(engine, aid, actor=Actor.of("maria", MANAGER), note="done")
        with pytest.raises(AlertError, match="is resolved"):
            acknowledge(engine, aid, actor=Actor.of("maria", MANAGER))
        assert session.scalar(select(func.count()).select_from(AlertTransition)) == 2  # open, resolved

    def test_a_resolved_alert_stays_quiet_for_an_hour(self, engine, session):
        stale_world(session)
        evaluate(engine, NOW, deliver=False)
        aid = the_alert(engine)["id"]
        resolve(engine, aid, actor=Actor.of("maria", MANAGER), note="restarted the sync", now=NOW + 10 * MINUTE)
        for later in (15, 40, 69):  # the condition still holds, at the same severity: nothing new opens
            assert evaluate(engine, NOW + later * MINUTE, deliver=False).opened == []
        assert open_alert_count(engine) == 0
        reopened = evaluate(engine, NOW + 71 * MINUTE, deliver=False).opened
        assert len(reopened) == 1 and reopened != [aid]

    def test_snooze_ends_and_the_alert_reopens_if_still_firing(self, engine, session):
        stale_world(session)
        evaluate(engine, NOW, deliver=False)
        aid = the_alert(engine)["id"]
        snooze(engine, aid, actor=Actor.of("maria", MANAGER), hours=2, note="later", now=NOW)
        evaluate(engine, NOW + HOUR, deliver=False)
        assert the_alert(engine)["status"] == "snoozed"
        evaluate(engine, NOW + 3 * HOUR, deliver=False)
        assert the_alert(engine)["status"] == "open"
        assert transitions(session, aid)[-1][:3] == ("snoozed", "open", "system:alerts")


class TestAutoResolve:
    def test_resolves_after_clear_for_the_set_time(self, engine, session):
        stale_world(session)
        configure_rule(engine, "stripe_stale", actor=Actor.of("ann", ["admin"]), params={"auto_resolve_hours": 2})
        evaluate(engine, NOW, deliver=False)
        make_sync_run(session, started_at=NOW + HOUR, finished_at=NOW + HOUR)  # the sync works again
        session.commit()
        evaluate(engine, NOW + 90 * timedelta(minutes=1), deliver=False)
        a = the_alert(engine)
        assert a["status"] == "open" and a["cleared_since"] == NOW + 90 * timedelta(minutes=1)
        evaluate(engine, NOW + 4 * HOUR, deliver=False)
        a = the_alert(engine)
        assert a["status"] == "resolved"
        assert transitions(session, a["id"])[-1][:3] == ("open", "resolved", "system:alerts")

    def test_switching_a_rule_off_resolves_its_alerts(self, engine, session):
        stale_world(session)
        evaluate(engine, NOW, deliver=False)
        configure_rule(engine, "stripe_stale", actor=Actor.of("ann", ["admin"]), enabled=False)
        result = evaluate(engine, NOW + HOUR, deliver=False)
        assert len(result.resolved) == 1 and the_alert(engine)["status"] == "resolved"
        evaluate(engine, NOW + 2 * HOUR, deliver=False)
        assert len(list_alerts(engine)) == 1  # nothing new while switched off

    def test_configure_validates_and_audits(self, engine, session):
        with pytest.raises(ValueError, match="is not a setting of stripe_stale"):
            configure_rule(engine, "stripe_stale", actor=Actor.of("ann", ["admin"]), params={"bogus": 1})
        with pytest.raises(ValueError, match="takes a number"):
            configure_rule(engine, "stripe_stale", actor=Actor.of("ann", ["admin"]), params={"max_hours_without_sync": "x"})
        with pytest.raises(ValueError, match="not an e-mail address"):
            configure_rule(engine, "stripe_stale", actor=Actor.of("ann", ["admin"]), notify_to={"email": ["nope"]})
        with pytest.raises(PermissionDenied):
            configure_rule(engine, "stripe_stale", actor=Actor.of("sam", ["support"]), enabled=False)
        cfg = configure_rule(engine, "large_refund", actor=Actor.of("ann", ["admin"]), params={"max_amount": {"USD": 100}})
        assert cfg.params["max_amount"]["USD"] == 100 and cfg.params["max_amount"]["EUR"] == 25000
        assert session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action == "alert_rule.update")) == 1


class TestParallelEvaluators:
    def test_a_concurrent_insert_is_updated_not_duplicated(self, engine, session, database_url):
        """Evaluator A has inserted the alert but not committed; evaluator B must wait on the unique
        index, lose, and update A's alert instead of opening a second one."""
        stale_world(session)
        other = make_engine(database_url)
        try:
            conn = other.connect()
            tx = conn.begin()
            conn.execute(insert(Alert).values(rule="stripe_stale", scope="sync", status="open", severity="low",
                                              value=1.0, hint="from A", opened_at=NOW, details={}))
            done = threading.Event()
            result = {}

            def evaluator_b() -> None:
                result["r"] = evaluate(engine, NOW, deliver=False, only=["stripe_stale"])
                done.set()

            thread = threading.Thread(target=evaluator_b)
            thread.start()
            assert not done.wait(1.0)  # B is blocked behind A's uncommitted row
            tx.commit()
            conn.close()
            thread.join(30)
        finally:
            other.dispose()
        assert result["r"].opened == [] and len(result["r"].updated) == 1
        rows = session.execute(select(Alert.status, Alert.hint)).all()
        assert len(rows) == 1 and rows[0].hint.startswith("No successful Stripe sync")

    def test_two_evaluators_at_once_open_one_alert(self, engine, session, database_url):
        stale_world(session)
        engines = [make_engine(database_url) for _ in range(2)]
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(eng) -> None:
            try:
                barrier.wait(5)
                evaluate(eng, NOW, deliver=False)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for e in engines:
            e.dispose()
        assert errors == []
        assert session.scalar(select(func.count()).select_from(Alert)) == 1
        assert session.scalar(select(func.count()).select_from(AlertTransition)) == 1


def test_unknown_status_filter_is_a_sentence(engine):
    with pytest.raises(ValueError, match="is not an alert status"):
        list_alerts(engine, status="bogus")




def test_migration_adds_the_time_indexes_the_rules_read_by(engine):
    from sqlalchemy import inspect

    names = {table: {i["name"] for i in inspect(engine).get_indexes(table)}
             for table in ("refunds", "disputes", "subscriptions", "alerts")}
    assert "ix_refunds_created_at" in names["refunds"] and "ix_disputes_created_at" in names["disputes"]
    assert "ix_subscriptions_canceled_at" in names["subscriptions"] and "ix_alerts_rule_opened" in names["alerts"]
