"""Training in place: for each action, what happens in Stripe, what the member sees and notices,
and the runbook section that explains it. The forms show these lines above the fields.

Kept beside the actions (not in the page) so the words stay true to what the action does; the
runbook page draws its headings with ``anchor`` so the links land on the right section.
Memberdesk itself e-mails members nothing; Stripe's own customer e-mails (receipts, refund
notices, invoices) go out only as the Stripe account's e-mail settings say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RUNBOOK_PAGE = "runbook"


@dataclass(frozen=True)
class Guide:
    stripe: str  # what happens in Stripe
    member: str  # what the member sees and notices: e-mail, card charge, access
    section: str  # the runbook heading (### ...) that explains it


def anchor(heading: str) -> str:
    """``Refund a payment`` -> ``refund-a-payment`` (the runbook page uses the same anchors)."""
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


GUIDES: dict[str, Guide] = {
    "refund": Guide(
        "Stripe refunds the amount to the card the payment came from; the payment shows as (partly) refunded.",
        "The money is back on their card statement in about 5-10 business days; Stripe e-mails a refund receipt "
        "if the account's refund e-mails are on. Their membership and access do not change.",
        "Refund a payment"),
    "retry_invoice": Guide(
        "Stripe charges the member's default card now for this open invoice.",
        "If it succeeds they see the charge on their card (and Stripe's receipt e-mail if receipts are on) and a "
        "past-due membership becomes active; if the card is declined nothing changes for them.",
        "Retry a failed invoice now"),
    "cancel": Guide(
        "Stripe marks the subscription to end at the period end, or ends it now; no refund is made.",
        "No further charges. At the period end they keep access until the date shown; “now” removes access at "
        "once. Memberdesk sends no e-mail.",
        "Cancel, undo a cancellation, reactivate"),
    "uncancel": Guide(
        "Stripe removes the scheduled cancellation from the subscription.",
        "Nothing changes today; they are charged again at the next renewal as before and keep access.",
        "Cancel, undo a cancellation, reactivate"),
    "reactivate": Guide(
        "Stripe creates a new subscription on the chosen price and charges the default card now.",
        "They see the charge on their card (and Stripe's receipt if receipts are on) and get access at once; "
        "if the card is declined nothing is created.",
        "Cancel, undo a cancellation, reactivate"),
    "pause": Guide(
        "Stripe stops collecting payments on the subscription; its invoices are voided, kept as drafts or marked "
        "uncollectible as you choose.",
        "No charges on their card while paused; their access stays as it is. Memberdesk sends no e-mail.",
        "Pause and resume payment collection"),
    "resume": Guide(
        "Stripe collects payments on the subscription again from the next invoice.",
        "Their card is charged again at the next renewal; nothing is charged today.",
        "Pause and resume payment collection"),
    "change_price": Guide(
        "Stripe moves the subscription to the new price: now with a prorated invoice charged at once, or from the "
        "next renewal with nothing charged now.",
        "They get the new tier's features at once; “now” charges (or credits) the prorated amount shown in the "
        "preview on their card, with Stripe's receipt if receipts are on.",
        "Change tier or price (finance, manager, admin)"),
    "extend": Guide(
        "Stripe moves the next billing date later by the free days (recorded as a trial on the subscription).",
        "No charge now; their next charge comes that many days later and access continues. They show as "
        "trialing until then.",
        "Add free days (extend)"),
    "grant_comp": Guide(
        "Nothing happens in Stripe: the complimentary membership lives in Memberdesk only.",
        "They get the tier's access for the days chosen, with no charge; it ends by itself.",
        "Grant a complimentary membership"),
    "edit_contact": Guide(
        "Stripe's customer is updated first (e-mail, name, phone, address), then Memberdesk.",
        "Stripe's next receipts and invoices go to the new e-mail address; nothing is charged.",
        "Edit contact details"),
    "add_note": Guide(
        "Nothing happens in Stripe.",
        "The member sees nothing: notes are for staff only and stored encrypted.",
        "Add a staff note"),
}


def runbook_link(action: str) -> str:
    """The in-app address of the action's runbook section."""
    guide = GUIDES.get(action)
    return f"/{RUNBOOK_PAGE}#{anchor(guide.section)}" if guide else f"/{RUNBOOK_PAGE}"
