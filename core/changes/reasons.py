"""The reasons an agent picks from, per action. A free comment is required as well."""

from __future__ import annotations

COMMON = ("customer_request", "goodwill", "billing_error", "technical_issue", "other")

REASONS: dict[str, tuple[str, ...]] = {
    "change_price": ("customer_request", "upgrade_offer", "downgrade_retention", "billing_error", "other"),
    "extend": ("goodwill", "service_outage", "technical_issue", "billing_error", "other"),
    "grant_comp": ("goodwill", "partner_or_press", "service_outage", "staff_or_test", "other"),
    "pause": ("customer_request", "financial_hardship", "travel_or_health", "other"),
    "resume": ("customer_request", "pause_ended_early", "other"),
    "cancel": ("customer_request", "too_expensive", "unused", "fraud_suspected", "billing_error", "other"),
    "uncancel": ("customer_request", "retention_offer", "canceled_by_mistake", "other"),
    "reactivate": ("customer_request", "canceled_by_mistake", "win_back", "other"),
    "refund": ("requested_by_customer", "duplicate", "fraudulent", "service_outage", "billing_error", "goodwill",
               "other"),
    "retry_invoice": ("customer_updated_card", "customer_request", "other"),
    "edit_contact": ("customer_request", "data_correction", "other"),
    "add_note": ("call_summary", "follow_up", "warning", "other"),
}

LABELS: dict[str, str] = {
    "customer_request": "Customer asked for it",
    "goodwill": "Goodwill gesture",
    "billing_error": "Billing error on our side",
    "technical_issue": "Technical issue in the app",
    "service_outage": "Service outage",
    "upgrade_offer": "Upgrade offer",
    "downgrade_retention": "Downgrade to keep the member",
    "partner_or_press": "Partner or press",
    "staff_or_test": "Staff or test account",
    "financial_hardship": "Financial hardship",
    "travel_or_health": "Travel or health",
    "pause_ended_early": "Pause ended early",
    "too_expensive": "Too expensive",
    "unused": "Not using it",
    "fraud_suspected": "Fraud suspected",
    "retention_offer": "Accepted a retention offer",
    "canceled_by_mistake": "Canceled by mistake",
    "win_back": "Win-back",
    "requested_by_customer": "Customer asked for a refund",
    "duplicate": "Duplicate charge",
    "fraudulent": "Fraudulent charge",
    "customer_updated_card": "Customer updated their card",
    "data_correction": "Correcting wrong data",
    "call_summary": "Call summary",
    "follow_up": "Follow-up needed",
    "warning": "Warning for other agents",
    "other": "Other (explain in the comment)",
}


def label(reason: str) -> str:
    return LABELS.get(reason, reason.replace("_", " ").capitalize())
