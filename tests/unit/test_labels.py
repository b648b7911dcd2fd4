"""Every stored code people read has words: one mapping (core.labels) for tables, charts and alerts."""

from __future__ import annotations

import pandas as pd

from core.changes.reasons import LABELS
from core.labels import code_label, scope_label
from core.stripe_gateway.errors import DECLINE_SENTENCES
from dashboard.format import display_frame


def test_codes_from_the_issue_read_as_words():
    assert code_label("payment_failed", "cancellation_reason") == "Payment failed"
    assert code_label("too_expensive", "cancellation_feedback") == "Too expensive"
    assert code_label("requested_by_customer", "reason") == "Customer asked for a refund"
    assert code_label("insufficient_funds", "decline_code") == "Insufficient funds"
    assert code_label("something_new_from_stripe") == "Something new from stripe"
    # The form's instruction is not part of the reason once it is recorded (a chart's bar said it).
    assert code_label("other", "reason") == "Other"


def test_every_known_code_has_a_label():
    for code in list(DECLINE_SENTENCES) + list(LABELS):
        assert "_" not in code_label(code, "decline_code" if code in DECLINE_SENTENCES else "reason"), code


def test_scopes_and_tables_in_words():
    assert scope_label("decline_code=do_not_honor") == "Decline code: Bank declined (do not honor)"
    assert scope_label("currency=EUR") == "Currency: EUR" and scope_label("all") == "All"
    frame = pd.DataFrame({"decline_code": ["insufficient_funds", None], "reason": ["payment_failed", "duplicate"],
                          "email": ["a_b@example.com", "c@example.com"]})
    shown = display_frame(frame)
    assert shown["Decline code"].tolist() == ["Insufficient funds", ""]
    assert shown["Reason"].tolist() == ["Payment failed", "Duplicate charge"]
    assert shown["Email"].tolist() == ["a_b@example.com", "c@example.com"]


def test_drill_exports_name_movements_entries_and_invoice_states_in_words():
    # The MRR movement, net revenue and trial drills' CSVs said "transfer_in", "gross" and "paid"
    # beside charts that said "Transfer in", "Gross revenue" and "Converted".
    from dashboard.format import export_frame

    movements = export_frame(pd.DataFrame({"movement": ["churn", "transfer_in", "unchanged"],
                                           "price_change_with_move": [None, "expansion", None]}))
    assert movements["Movement"].tolist() == ["Churn", "Transfer in", "Unchanged"]
    assert movements["Price change with move"].tolist() == ["", "Expansion", ""]
    cash = export_frame(pd.DataFrame({"entry": ["gross", "refunds", "disputes"], "amount_minor": [500, -500, -500],
                                      "currency": ["USD", "USD", "JPY"]}))
    assert cash["Entry"].tolist() == ["Payment", "Refund", "Dispute lost"]
    trials = export_frame(pd.DataFrame({"first_invoice_status": ["paid", "open", None]}))
    assert trials["First invoice status"].tolist() == ["Paid", "Open", ""]


def test_a_tiny_change_is_not_minus_zero_percent():
    from dashboard.format import money, percent

    assert f"{money(-581, 'USD', signed=True)} ({percent(-581 / 11_399_901, signed=True)})" == "-$5.81 (-<0.1%)"
    assert percent(0.0, signed=True) == "+0.0%" and percent(-0.00001) == "0.0%"
    assert percent(-0.023, signed=True) == "-2.3%"


def test_times_in_tables_carry_their_zone():
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    moment = datetime(2026, 11, 27, 14, 5, tzinfo=UTC)
    frame = pd.DataFrame({"created_at": [moment.astimezone(ZoneInfo("Europe/Paris"))], "at": [moment]})
    shown = display_frame(frame)
    assert shown["Created at"].tolist() == ["2026-11-27 15:05 CET"] and shown["At"].tolist() == ["2026-11-27 14:05 UTC"]


def test_the_member_timeline_is_in_words():
    # The timeline showed "trial_started" and "past_due" as stored.
    frame = pd.DataFrame({"kind": ["trial_started", "cancel_scheduled", "something_new"],
                          "from_status": [None, "active", "past_due"], "to_status": ["trialing", "active", "unpaid"]})
    shown = display_frame(frame)
    assert shown["Kind"].tolist() == ["Trial started", "Set to cancel at period end", "Something new"]
    assert shown["From status"].tolist() == ["", "Active", "Past due"]
    assert shown["To status"].tolist() == ["Trialing", "Active", "Unpaid"]


def test_a_csv_holds_amounts_a_spreadsheet_can_add_up():
    # The member page's and the audit log's CSVs held "$9.99" and "¥500": text to a spreadsheet.
    frame = pd.DataFrame({"amount_minor": [999, -5, 500, None, 123456], "currency": ["USD", "EUR", "JPY", "USD", "GBP"],
                          "decline_code": ["insufficient_funds", None, None, None, None]})
    shown, export = display_frame(frame), display_frame(frame, for_export=True)
    assert shown["Amount"].tolist() == ["$9.99", "-€0.05", "¥500", "—", "£1,234.56"]
    assert export["Amount"].tolist() == ["9.99", "-0.05", "500", "", "1234.56"]
    assert export["Currency"].tolist() == ["USD", "EUR", "JPY", "USD", "GBP"]
    assert export["Decline code"].tolist() == shown["Decline code"].tolist()  # words in both
    times = pd.DataFrame({"decided_at": pd.to_datetime([None, "2026-12-07 13:27"], utc=True)})
    assert display_frame(times)["Decided at"].tolist() == ["—", "2026-12-07 13:27 UTC"]
    assert display_frame(times, for_export=True)["Decided at"].tolist() == ["", "2026-12-07 13:27 UTC"]


def test_a_flag_reads_yes_or_no_whichever_database_gave_it():
    # SQLite hands a flag back as 1/0, PostgreSQL as true/false: one CSV said "1", another "True".
    sqlite = pd.DataFrame({"is_renewal": [1, 0, None], "cancel_at_period_end": [0, 1, 0]})
    postgres = pd.DataFrame({"is_renewal": [True, False, None], "cancel_at_period_end": [False, True, False]})
    for frame in (sqlite, postgres):
        export = display_frame(frame, for_export=True)
        assert export["Is renewal"].tolist() == ["Yes", "No", ""]
        assert export["Cancel at period end"].tolist() == ["No", "Yes", "No"]
    assert display_frame(pd.DataFrame({"paid": [True, False]}))["Paid"].tolist() == ["Yes", "No"]


def test_revenue_segment_bars_name_tiers_and_intervals_in_words():
    # The bars said "premium" and "month" where the tables and forms said "Premium" and "Monthly".
    from dashboard.analytics_ui import DrillTarget, segment_points

    def bars(dim: str, keys: list[str]) -> list[tuple[str, str]]:
        frame = pd.DataFrame({"key": keys, "gross": [100] * len(keys)})
        return [(p.label, DrillTarget.parse(p.key, "").value) for p in segment_points(frame, dim, [("gross", "Gross", "gross_revenue")])]

    assert bars("tier", ["premium", "none"]) == [("Premium", "premium"), ("None", "none")]
    assert bars("interval", ["month", "year"]) == [("Monthly", "month"), ("Yearly", "year")]
    assert bars("country", ["JP", "none"]) == [("JP", "JP"), ("None", "none")]


def test_audit_actions_read_as_words():
    from core.labels import action_label

    assert action_label("change.refund.requested") == "Member change: refund, requested"
    assert action_label("auth.login_failed") == "Sign-in: failed"
    assert action_label("auth.login") == "Sign-in: signed in"  # not "Sign-in: login"
    assert action_label("alert_rule.update") == "Alert rule: update"
    assert action_label("newarea.did_it") == "Newarea: did it" and action_label("Refund a payment") == "Refund a payment"
    shown = display_frame(pd.DataFrame({"action": ["staff.set_roles"]}))
    assert shown["Action"].tolist() == ["Staff account: set roles"]


def test_drill_times_are_shown_in_the_business_time_zone():
    # A payment at 01:44 UTC on 1 December sits under Tokyo's 1 December 10:44, not a UTC date.
    from dashboard.format import display_frame, in_zone

    rows = pd.DataFrame({"created_at": pd.to_datetime(["2026-11-30 16:30", "2026-12-01 01:44"], utc=True),
                         "amount_minor": [500, 700], "currency": ["JPY", "JPY"]})
    shown = display_frame(in_zone(rows, "Asia/Tokyo"))
    assert shown["Created at"].tolist() == ["2026-12-01 01:30 JST", "2026-12-01 10:44 JST"]
    assert str(rows["created_at"].dt.tz) == "UTC"  # the rows themselves are left as stored
