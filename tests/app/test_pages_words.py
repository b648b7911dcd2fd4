"""What a person reads on the Alerts, Admin, Stripe sync and Runbook pages (AppTest): stored codes
in words (no rule code, no raw column name, no Python dict), FX rates opening on the recent months
with sensible decimals, capitalised weekdays, and guide links the app serves."""

from __future__ import annotations

import re
from datetime import timedelta

from core.alerts import evaluate
from core.timeutil import utc_now
from tests.support.apptest import app_test, page_app_test, texts
from tests.support.factories import make_sync_run
from tests.support.worlds import create_staff

RULE_CODES = ("failure_rate_day", "failure_rate_hour", "revenue_drop", "refund_spike", "stripe_stale")


def _cells(frame) -> str:
    return " ".join([*map(str, frame.columns), *(str(v) for v in frame.to_numpy().ravel())])


def _tab(at, label: str):
    return next(t for t in at.tabs if t.label == label)


def test_alert_history_story_and_rules_read_as_words(database_url, engine, session):
    now = utc_now()
    make_sync_run(session, started_at=now - timedelta(hours=10), finished_at=now - timedelta(hours=10))
    session.commit()
    evaluate(engine, now, deliver=False)  # "Stripe data stale": the last sync ended ten hours ago
    at = page_app_test(database_url, "alerts.py", role="admin")
    at.run()
    assert not at.exception, at.exception
    history_tab, rules_tab = _tab(at, "History"), _tab(at, "Rules")

    (history,) = [df.value for df in history_tab.dataframe]
    shown = _cells(history)
    assert "Stripe data stale" in shown and "Open" in shown
    assert not [code for code in RULE_CODES if code in shown], shown
    assert "Value text" not in shown and "Baseline text" not in shown and "Value" in history.columns
    assert "Status" in history.columns and {"Open"} == set(history["Status"])

    at.number_input(key="alerts_story").set_value(int(history["Alert"].iloc[0])).run()
    assert not at.exception, at.exception
    story = _cells(_tab(at, "History").dataframe[-1].value)
    assert "Alert rules (automatic)" in story and "system:alerts" not in story

    (rules,) = [df.value for df in rules_tab.dataframe]
    cells = _cells(rules.drop(columns="Name for the command line"))
    assert "{" not in cells and "'" not in cells, cells
    assert not [code for code in RULE_CODES if code in cells]
    assert "Minimum ratio: 1.5 × the baseline" in cells and "Nobody (the page only)" in cells


def test_admin_rates_open_on_recent_months_and_weekdays_are_capitalised(database_url, engine):
    from core.permissions import Actor
    from core.settings import business

    create_staff(engine)
    this_month = utc_now().date().replace(day=1)
    months = {"ahead": (this_month + timedelta(days=62)).replace(day=1), "now": this_month,
              "before": (this_month - timedelta(days=1)).replace(day=1)}
    for month in months.values():
        business.save_rate(engine, actor=Actor.of("admin", ["admin"]), currency="EUR", month=month,
                           usd_per_unit="1.0850000000")
    at = app_test(database_url, role="admin")
    at.run()
    at.switch_page("../pages/admin.py").run()
    at.session_state["admin_tabs"] = "Business settings"
    at.run()
    assert not at.exception, at.exception
    (rates,) = [df.value for df in at.dataframe if "USD per unit" in df.value.columns]
    eur = rates[rates["Currency"] == "EUR"]
    order = list(eur["Month"])
    now, before, ahead = (f"{months[k]:%Y-%m}" for k in ("now", "before", "ahead"))
    assert order[:2] == [now, before], eur.head()
    up_to_now = [m for m in order if m <= now]
    assert order[:len(up_to_now)] == up_to_now and order.index(ahead) >= len(up_to_now), order
    assert set(eur[eur["Month"].isin([now, before, ahead])]["USD per unit"]) == {"1.085"}
    assert all(re.fullmatch(r"\d+\.\d{2,6}", r) for r in rates["USD per unit"]), rates["USD per unit"].head()
    week = next(s for s in at.selectbox if s.label == "Week starts on")
    assert week.options[0] == "Monday" and all(o[0].isupper() for o in week.options)


def test_stripe_sync_links_to_guides_the_app_serves(database_url):
    at = page_app_test(database_url, "stripe_sync.py", role="admin")
    at.run()
    assert not at.exception, at.exception
    shown = " ".join(c.value for c in at.caption)
    assert "(/runbook?doc=stripe-sync#the-admin-page-stripe-sync)" in shown
    assert "(/runbook#when-something-looks-wrong)" in shown and ".md)" not in shown


def test_the_runbook_page_serves_the_stripe_sync_guide(database_url):
    at = page_app_test(database_url, "runbook.py", role="support")
    at.run()
    assert not at.exception, at.exception
    body = " ".join(m.value for m in at.markdown)
    assert "](/runbook?doc=stripe-sync#webhooks-the-push-path)" in body and "](stripe-sync.md" not in body
    at.query_params["doc"] = "stripe-sync"
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Stripe sync" and "The admin page (Stripe sync)" in texts(at)
    at.query_params["doc"] = "../secrets"
    at.run()
    assert "There is no guide" in texts(at) and at.title[0].value != "Stripe sync"
