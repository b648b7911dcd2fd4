"""The alerts page (AppTest): opening it evaluates the rules, shows the open alert with its value,
baseline, hint, chart and the payments behind it linked to member pages; a manager resolves it
with a note; a note is required."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from core.models import Alert, AlertTransition
from core.permissions import Actor
from core.timeutil import utc_now
from tests.support.apptest import page_app_test, texts
from tests.support.factories import make_member, make_payment_batch

HOUR, WEEK = timedelta(hours=1), timedelta(weeks=1)
CHECKING = "Checking the alert rules now"


def opened(at):
    """Run the page as a person opens it; when the check of the rules it started outlasted the
    page's wait (a slow machine), wait for the check and run the page again, as the page's own
    poller does."""
    import time

    from core.alerts import background

    at.run()
    if CHECKING in texts(at):
        deadline = time.monotonic() + 60
        while background.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        at.run()
    return at


def spike_world(session) -> None:
    now = utc_now()
    m = make_member(session)
    for w in range(1, 5):
        end = now - WEEK * w
        make_payment_batch(session, member=m, start=end - 23 * HOUR, end=end - HOUR, count=120, failed=6)
    # inside the window however long the page takes to open
    make_payment_batch(session, member=m, start=now - 23 * HOUR, end=now - HOUR, count=150, failed=40,
                       decline_code="insufficient_funds")
    session.commit()


def test_manager_sees_the_alert_and_resolves_it(database_url, engine, session):
    spike_world(session)
    at = opened(page_app_test(database_url, "alerts.py", role="manager"))
    assert not at.exception, at.exception
    shown = texts(at)
    assert "Payment failure rate, last 24 hours" in " ".join(e.label for e in at.expander)
    # Each card is numbered, as the answers name it ("Alert 4 acknowledged.").
    assert all(re.match(r"#\d+ · ", e.label) for e in at.expander), [e.label for e in at.expander]
    assert "40 of 150 first payment attempts failed" in shown and "26.7%" in shown and "5.0%" in shown
    assert at.get("plotly_chart"), "a small chart of the recent history"
    links = [df.value for df in at.dataframe if "Member page" in df.value.columns]
    assert links and links[0]["Member page"].iloc[0].startswith("members?member=")

    alert_id = session.scalar(select(Alert.id).where(Alert.rule == "failure_rate_day"))
    button = f"FormSubmitter:alert-form-{alert_id}-Resolve"
    at.button(key=button).click().run()
    assert "Please write a note saying why." in texts(at)
    # A note too long is said, and stays in the field to be shortened (the browser dropped a longer
    # paste whole under a max_chars).
    at.text_input(key=f"alert-note-{alert_id}").input("x" * 2001)
    at.button(key=button).click().run()
    assert "The note is too long: keep it under 2000 characters." in texts(at)
    assert at.text_input(key=f"alert-note-{alert_id}").value == "x" * 2001
    at.text_input(key=f"alert-note-{alert_id}").input("bank outage, over")
    at.button(key=button).click().run()
    assert not at.exception, at.exception
    assert f"Alert {alert_id} resolved." in texts(at)
    session.expire_all()
    assert session.scalar(select(Alert.status).where(Alert.id == alert_id)) == "resolved"
    note = session.scalar(select(AlertTransition.note).where(AlertTransition.alert_id == alert_id,
                                                             AlertTransition.to_status == "resolved"))
    assert note == "bank outage, over"
    # The quiet Open tab now points to it.
    assert "No open alerts" in texts(at) and "The latest, “Payment failure rate, last 24 hours”" in texts(at)


def test_empty_state_is_a_sentence(database_url):
    at = opened(page_app_test(database_url, "alerts.py", role="admin"))
    assert not at.exception
    assert "No open alerts: every rule is within its baseline." in texts(at)


def test_a_slow_check_of_the_rules_does_not_hold_the_page(database_url, engine, session):
    """The rules' check outlasts the page's wait (here: another transaction holds the alerts
    table): the page answers with the last results and says the rules are being checked; once
    the check is done, the page shows the alert it opened."""
    import time

    from sqlalchemy import text

    from core.alerts import background
    from core.alerts.evaluate import ensure_rules

    spike_world(session)
    ensure_rules(engine)  # the rule rows a running system has (the page's Rules tab would write them)
    with engine.connect() as blocker:
        if engine.dialect.name == "sqlite":
            blocker.exec_driver_sql("BEGIN IMMEDIATE")  # readers go on; the check's first write waits
        else:
            blocker.execute(text("BEGIN"))
            blocker.execute(text("LOCK TABLE alerts IN EXCLUSIVE MODE"))  # reads go on, writes wait
        at = page_app_test(database_url, "alerts.py", role="manager")
        at.run()
        assert not at.exception, at.exception
        assert CHECKING in texts(at)
        assert "No open alerts" in texts(at)
        assert background.running()
        # Another visit meanwhile finds the check running and answers without waiting for it.
        again = page_app_test(database_url, "alerts.py", role="admin")
        started = time.monotonic()
        again.run()
        assert CHECKING in texts(again) and time.monotonic() - started < 10
        blocker.rollback()
    deadline = time.monotonic() + 60
    while background.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()
    assert not at.exception, at.exception
    assert CHECKING not in texts(at)
    assert "Payment failure rate, last 24 hours" in " ".join(e.label for e in at.expander)


def test_admin_changes_a_rule_on_the_page(database_url, engine, session):
    from core.models import AlertRule

    at = page_app_test(database_url, "alerts.py", role="admin")
    at.run()
    at.selectbox(key="alerts_rule_pick").select("refund_spike").run()
    assert at.number_input(key="alerts_rule_refund_spike_min_count").value == 6
    at.number_input(key="alerts_rule_refund_spike_min_count").set_value(10)
    at.toggle(key="alerts_rule_refund_spike_enabled").set_value(False)
    at.text_input(key="alerts_rule_refund_spike_emails").input("finance@example.com")
    at.button(key="FormSubmitter:alerts-rule-form-refund_spike-Save rule").click().run()
    assert not at.exception, at.exception
    session.expire_all()
    row = session.get(AlertRule, "refund_spike")
    # Only the threshold that changed is stored: the others keep following their defaults.
    assert (row.enabled, row.params, row.notify, row.updated_by) == (
        False, {"min_count": 10}, {"email": ["finance@example.com"], "webhook": []}, "admin")
    assert "Minimum count: 10" in " ".join(str(v) for v in at.dataframe[-1].value["Thresholds"])
    # Saved again unchanged: said, and not a second audit entry of equal halves.
    from core.models import AuditEntry

    entries = session.query(AuditEntry).filter_by(action="alert_rule.update").count()
    at.button(key="FormSubmitter:alerts-rule-form-refund_spike-Save rule").click().run()
    assert "nothing to save, it is as it was" in texts(at)
    session.expire_all()
    assert session.query(AuditEntry).filter_by(action="alert_rule.update").count() == entries == 1


def test_a_manager_sets_a_large_refund_in_each_currencys_own_units(database_url, engine, session):
    """The amounts are typed as they are written ($500.00, ¥50,000), not in minor units; "Back
    to the defaults" brings every untouched threshold back, and the form then shows them."""
    from core.models import AlertRule

    at = page_app_test(database_url, "alerts.py", role="manager")
    at.run()
    at.selectbox(key="alerts_rule_pick").select("large_refund").run()
    usd, jpy = at.number_input(key="alerts_rule_large_refund_max_amount.USD"), \
        at.number_input(key="alerts_rule_large_refund_max_amount.JPY")
    assert (usd.label, usd.value, jpy.label, jpy.value) == ("Refunds above (USD)", 250.0, "Refunds above (JPY)", 40000)
    usd.set_value(500.0)
    jpy.set_value(50000)
    at.number_input(key="alerts_rule_large_refund_lookback_hours").set_value(48)
    at.button(key="FormSubmitter:alerts-rule-form-large_refund-Save rule").click().run()
    assert not at.exception, at.exception
    session.expire_all()
    stored = session.get(AlertRule, "large_refund").params
    assert stored["lookback_hours"] == 48
    assert {c: int(v) for c, v in stored["max_amount"].items()} == {"USD": 50000, "EUR": 25000, "GBP": 20000,
                                                                     "JPY": 50000}
    assert "Refunds above: $500.00, €250.00, £200.00, ¥50,000" in texts(at) + " ".join(
        str(v) for v in at.dataframe[-1].value["Thresholds"])

    # Each save gives the inputs new keys (the browser keeps what was typed into a kept key).
    at.number_input(key="alerts_rule_large_refund_1_max_amount.GBP").set_value(300.0)
    at.checkbox(key="alerts_rule_large_refund_1_reset").check()
    at.button(key="FormSubmitter:alerts-rule-form-large_refund-Save rule").click().run()
    assert not at.exception, at.exception
    session.expire_all()
    stored = session.get(AlertRule, "large_refund").params
    assert {c: int(v) for c, v in stored["max_amount"].items()} == {"USD": 25000, "EUR": 25000, "GBP": 30000,
                                                                     "JPY": 40000}
    assert "lookback_hours" not in stored
    assert at.number_input(key="alerts_rule_large_refund_2_lookback_hours").value == 24
    assert at.number_input(key="alerts_rule_large_refund_2_max_amount.USD").value == 250.0


def test_a_snoozed_alert_waits_apart_without_acknowledge(database_url, engine, session):
    from core.alerts import evaluate, list_alerts, snooze

    spike_world(session)
    evaluate(engine, deliver=False)
    (alert,) = list_alerts(engine)
    snooze(engine, alert["id"], actor=Actor.of("maria", ["manager"]), hours=4, note="bank outage, known")
    at = page_app_test(database_url, "alerts.py", role="manager")
    at.run()
    assert not at.exception, at.exception
    open_tab, snoozed_tab = at.tabs[0], at.tabs[1]
    said = " ".join(m.value for m in open_tab.info)
    assert len(open_tab.expander) == 0 and said.startswith("No open alerts; 1 snoozed (see Snoozed)")
    assert "within its baseline" not in said  # its condition still holds
    assert len(snoozed_tab.expander) == 1
    acknowledge = [b for b in snoozed_tab.button if b.label == "Acknowledge"]
    assert acknowledge and all(b.disabled for b in acknowledge)
    shown = texts(at)
    assert "Snoozed until" in shown and "Opened " in shown and " UTC · last fired " in shown
    assert "insufficient_funds" not in shown and "Insufficient funds" in shown
