"""``python -m cli alerts``: evaluate for cron, list as JSON, act on an alert, tune a rule; bad
input is one sentence and exit code 2."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from cli import main
from tests.support.db import TEST_KEY
from tests.support.factories import at, make_sync_run

NOW = at("2026-03-10 23:00")


@pytest.fixture
def cli(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MEMBERDESK_ENCRYPTION_KEYS", TEST_KEY)
    monkeypatch.setenv("MEMBERDESK_SMTP_URL", "")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["alerts", *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_evaluate_list_and_act(cli, session):
    make_sync_run(session, started_at=NOW - timedelta(hours=10), finished_at=NOW - timedelta(hours=10))
    session.commit()
    code, out, _ = cli("evaluate", "--now", "2026-03-10T23:00")
    assert code == 0 and out.startswith("evaluated at 2026-03-10 23:00 UTC: 1 opened")
    code, out, _ = cli("list", "--format", "json", "--status", "open")
    [alert] = json.loads(out)
    assert (alert["rule"], alert["scope"], alert["status"]) == ("stripe_stale", "sync", "open")
    assert alert["value_text"] == "10.0 hours" and alert["opened_at"] == "2026-03-10T23:00:00+00:00"
    assert cli("ack", str(alert["id"]))[1] == f"alert {alert['id']} is acknowledged\n"
    code, _, err = cli("resolve", str(alert["id"]), "--note", " ")
    assert code == 2 and err == "error: Please write a note saying why.\n"
    assert cli("resolve", str(alert["id"]), "--note", "rotated the key")[0] == 0
    code, out, _ = cli("list", "--search", "rotated")
    assert "resolved" in out and "stripe_stale" in out


def test_configure_and_bad_input(cli):
    code, out, _ = cli("configure", "refund_spike", "--set", "min_count=10", "--disable")
    assert code == 0 and out.startswith("refund_spike: off") and "    min_count = 10  (Minimum count)\n" in out
    assert cli("configure", "refund_spike", "--set", "min_count=lots")[2] == (
        "error: “Minimum count” (min_count) takes a number, not “lots”.\n")
    assert cli("configure", "refund_spike", "--set", "count=3")[2].startswith(
        "error: “count” is not a threshold of refund_spike; its thresholds are min_count, ")
    assert cli("configure", "nope")[2].startswith("error: There is no alert rule “nope”")
    assert cli("evaluate", "--now", "yesterday")[2] == (
        "error: “yesterday” is not a time; write it like 2026-03-01T12:00.\n")
    code, out, _ = cli("rules", "--format", "json")
    assert code == 0 and {r["slug"]: r["enabled"] for r in json.loads(out)}["refund_spike"] is False


def test_configure_takes_the_units_the_page_shows(cli):
    """An amount as it is written ($500.00 is 500, ¥70,000 is 70000) and a share in per cent, as in
    the page's form: 500 was stored as 500 cents, an alert on every refund above $5.00."""
    code, out, _ = cli("configure", "large_refund", "--set", "max_amount.USD=500", "--set", "max_amount.JPY=70000")
    assert code == 0 and "    max_amount.USD = 500.00  (Refunds above (USD))\n" in out
    assert "    max_amount.JPY = 70000  (Refunds above (JPY))\n" in out
    code, out, _ = cli("configure", "failure_rate_day", "--set", "baseline_floor=3", "--set", "first_attempts_only=no")
    assert "    baseline_floor = 3.00  (Baseline floor (%))\n" in out and "first_attempts_only = no" in out
    stored = {r["slug"]: r["params"] for r in json.loads(cli("rules", "--format", "json")[1])}
    assert stored["large_refund"]["max_amount"]["USD"] == 50_000 and stored["large_refund"]["max_amount"]["JPY"] == 70_000
    assert stored["failure_rate_day"]["baseline_floor"] == pytest.approx(0.03)
    assert stored["failure_rate_day"]["first_attempts_only"] is False
    assert cli("configure", "large_refund", "--set", "max_amount.USD=0.001")[2].startswith("error: ")
    assert cli("configure", "failure_rate_day", "--set", "first_attempts_only=maybe")[2] == (
        "error: “First attempts only” (first_attempts_only) is yes or no, not “maybe”.\n")
