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
