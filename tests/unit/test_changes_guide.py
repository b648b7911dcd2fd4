"""Training in place: every action says what happens in Stripe and for the member, and links to a
runbook section that exists (as the runbook page draws it)."""

from __future__ import annotations

from pathlib import Path

from core.changes import ACTIONS
from core.changes.guide import GUIDES, anchor, runbook_link
from dashboard.runbook_view import sections

ROOT = Path(__file__).resolve().parents[2]


def test_every_action_has_a_guide_whose_section_exists():
    headings = {anchor(head) for level, head, _ in sections((ROOT / "docs" / "runbook.md").read_text()) if level}
    assert set(ACTIONS) <= set(GUIDES)
    for name, guide in GUIDES.items():
        assert guide.stripe.endswith(".") and guide.member.endswith("."), name
        assert runbook_link(name).split("#")[1] in headings, (name, guide.section)


def test_anchors_are_plain():
    assert anchor("Change tier or price (finance, manager, admin)") == "change-tier-or-price-finance-manager-admin"
    assert runbook_link("refund") == "/runbook#refund-a-payment"
