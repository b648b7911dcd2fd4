"""Tables the pages show, shaped for people: the FX rates open on the recent months with sensible
decimals; alert rules' thresholds read as labelled values; the in-app guides link to each other."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pandas as pd

from core.alerts import rules
from core.labels import notify_text, rule_label, thresholds_text
from dashboard.reads import fx_table
from dashboard.runbook_view import served_links
from dashboard.sync_view import in_words


def test_fx_rates_open_on_this_month_then_older_then_the_months_set_ahead():
    rates = pd.DataFrame([{"currency": c, "month": date(y, m, 1), "usd_per_unit": Decimal(r), "updated_by": "system"}
                          for c, r in (("JPY", "0.0067123400"), ("EUR", "1.0850000000"))
                          for y, m in ((2026, 10), (2026, 11), (2026, 12), (2027, 1))])
    shown = fx_table(rates, date(2026, 11, 15))
    assert list(zip(shown["month"], shown["currency"], strict=True)) == [
        ("2026-11", "EUR"), ("2026-11", "JPY"), ("2026-10", "EUR"), ("2026-10", "JPY"),
        ("2026-12", "EUR"), ("2026-12", "JPY"), ("2027-01", "EUR"), ("2027-01", "JPY")]
    assert set(shown["usd_per_unit"]) == {"1.085", "0.006712"}


def test_every_rule_threshold_reads_as_words():
    for rule in rules.all_rules():
        text = thresholds_text(rule.defaults, rule.unit)
        assert "{" not in text and "_" not in text and "'" not in text, (rule.slug, text)
        assert rule_label(rule.slug) == rule.title
    assert "Refunds above: $250.00, €250.00" in thresholds_text(rules.get("large_refund").defaults, "money")
    assert "Minimum ratio: 1.5 × the baseline" in thresholds_text(rules.get("failure_rate_day").defaults, "percent")
    assert notify_text({"email": ["ops@example.com"], "webhook": []}) == "E-mail: ops@example.com"
    assert notify_text({}) == "Nobody (the page only)"


def test_guides_link_to_the_copies_the_app_serves():
    text = "([stripe-sync.md](stripe-sync.md#webhooks-the-push-path)) and [deploy](deploy.md)"
    assert served_links(text) == ("([stripe-sync.md](/runbook?doc=stripe-sync#webhooks-the-push-path)) "
                                  "and deploy (docs/deploy.md)")


def test_sync_tables_show_runs_in_words():
    rows = [{"run": 3, "kind": "full", "status": "skipped", "object type": "payment_intent", "backfill": "done"}]
    assert in_words(rows) == [{"Run": 3, "Kind": "Full backfill", "Status": "Skipped (another run was going)",
                               "Object type": "Payment intent", "Backfill": "Done"}]


def test_an_alerts_story_and_notifications_read_as_words():
    from datetime import UTC, datetime

    from dashboard.alerts_view import notifications_frame, transitions_frame

    at = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
    story = transitions_frame([{"at": at, "actor": "system:alerts", "from": None, "to": "open", "note": "x"},
                               {"at": at, "actor": "maria", "from": "open", "to": "acknowledged", "note": None}])
    assert story.to_dict("records") == [
        {"When": "2026-03-10 23:00 UTC", "By": "Alert rules (automatic)", "From": "", "To": "Open", "Note": "x"},
        {"When": "2026-03-10 23:00 UTC", "By": "maria", "From": "Open", "To": "Acknowledged", "Note": ""}]
    sent = notifications_frame([{"channel": "webhook", "target": "https://hooks.example", "status": "failed",
                                 "attempts": 8, "last_error": "HTTP 500", "next_attempt_at": None, "sent_at": None}])
    assert (sent["Channel"].iloc[0], sent["Status"].iloc[0]) == ("Webhook", "Given up")
