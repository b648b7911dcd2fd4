"""What the member page says after Confirm."""

from __future__ import annotations

from core.changes.model import Outcome, Preview
from dashboard.change_forms import _said_done


def test_a_second_confirm_still_says_what_was_done():
    # A double click: the second press found the change made and said only "already made", in
    # place of the first press's "Done. … $6.46 charged now", so the amount was never seen.
    preview = Preview("change_price", ["Switches to Platinum at $30.00/month now.",
                                       "Stripe prorates the rest of this period: $6.46 charged now."])
    first = Outcome("applied", 7, "Done.", "k")
    again = Outcome("applied", 7, "This change was already made; it was not made twice.", "k", replayed=True)
    assert _said_done(first, "change_price", preview).endswith("$6.46 charged now.")
    said = _said_done(again, "change_price", preview)
    assert said.startswith("This change was already made; it was not made twice.")
    assert "$6.46 charged now." in said
    assert _said_done(Outcome("pending_approval", 8, "The change waits for a second person's approval.", "j"),
                      "refund", None) == "The change waits for a second person's approval."
