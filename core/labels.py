"""Human labels for every code we store: the one mapping pages, charts and alert hints use.

Codes stay as they are in the database, the CSV exports of the command line and the API
(Stripe's strings, our reason codes); people read the label. An unknown code (Stripe adds
values) is shown with its underscores turned into words rather than raw.
"""

from __future__ import annotations

from core.changes.reasons import LABELS as CHANGE_REASONS

# Stripe's subscription.cancellation_details.reason and .feedback
CANCELLATION = {
    "cancellation_requested": "Member asked to cancel",
    "payment_failed": "Payment failed",
    "payment_disputed": "Payment disputed",
    "customer_service": "Unhappy with customer service",
    "low_quality": "Quality too low",
    "missing_features": "Missing features",
    "switched_service": "Switched to another service",
    "too_complex": "Too complex",
    "too_expensive": "Too expensive",
    "unused": "Not using it",
    "paused": "Collection paused",  # ours: a pause stops MRR (core.metrics.daily.CANCELLATION_REASON)
}
# Stripe's refund.reason
REFUND = {
    "duplicate": "Duplicate charge",
    "fraudulent": "Fraudulent charge",
    "requested_by_customer": "Customer asked for a refund",
    "expired_uncaptured_charge": "Uncaptured charge expired",
}
# Stripe's decline codes and charge failure codes (https://docs.stripe.com/declines/codes)
DECLINE = {
    "authentication_required": "Needs 3-D Secure confirmation",
    "card_declined": "Card declined",
    "card_not_supported": "Card not supported",
    "card_velocity_exceeded": "Spending limit reached",
    "currency_not_supported": "Currency not supported",
    "do_not_honor": "Bank declined (do not honor)",
    "expired_card": "Card expired",
    "fraudulent": "Suspected fraud",
    "generic_decline": "Declined without a reason",
    "incorrect_cvc": "Wrong security code (CVC)",
    "incorrect_number": "Wrong card number",
    "insufficient_funds": "Insufficient funds",
    "lost_card": "Card reported lost",
    "pickup_card": "Pick-up card",
    "processing_error": "Processing error",
    "restricted_card": "Restricted card",
    "stolen_card": "Card reported stolen",
    "try_again_later": "Try again later",
    "withdrawal_count_limit_exceeded": "Withdrawal limit reached",
    "unknown": "Unknown",
}
# Stripe's dispute.reason
DISPUTE = {
    "credit_not_processed": "Credit not processed",
    "duplicate": "Duplicate charge",
    "fraudulent": "Fraudulent",
    "general": "General",
    "product_not_received": "Not received",
    "product_unacceptable": "Unacceptable",
    "subscription_canceled": "Subscription canceled",
    "unrecognized": "Unrecognised charge",
}
# Stripe's card brands (payment_method.card.brand / charge payment_method_details.card.brand)
CARD_BRAND = {"amex": "American Express", "cartes_bancaires": "Cartes Bancaires", "diners": "Diners Club",
              "discover": "Discover", "eftpos_au": "eftpos Australia", "interac": "Interac", "jcb": "JCB",
              "link": "Link", "mastercard": "Mastercard", "unionpay": "UnionPay", "visa": "Visa"}
CHURN_KIND = {"voluntary": "Voluntary", "involuntary": "Involuntary (payment)"}
# Ours: membership_changes.kind (core.stripe_store.rules.derive_changes and the staff changes)
CHANGE_KIND = {
    "created": "Subscribed", "trial_started": "Trial started", "converted": "Trial converted",
    "upgraded": "Upgraded", "downgraded": "Downgraded", "price_changed": "Price changed",
    "quantity_changed": "Quantity changed", "canceled": "Canceled", "cancel_scheduled": "Set to cancel at period end",
    "cancel_unscheduled": "Cancellation undone", "reactivated": "Reactivated", "paused": "Collection paused",
    "resumed": "Collection resumed", "past_due": "Payment failed (past due)", "recovered": "Recovered from past due",
    "extended": "Free days added", "comp_granted": "Complimentary period", "discount_changed": "Discount changed",
    "status_changed": "Status changed",
}
# Stripe's subscription statuses
SUBSCRIPTION_STATUS = {
    "active": "Active", "trialing": "Trialing", "past_due": "Past due", "unpaid": "Unpaid", "canceled": "Canceled",
    "paused": "Paused", "incomplete": "Incomplete", "incomplete_expired": "Incomplete, expired",
}

# Ours: an MRR movement (core.metrics.movements) and the Revenue chain's steps around them
MOVEMENT = {
    "start": "Starting MRR", "new": "New", "expansion": "Expansion", "reactivation": "Reactivation",
    "contraction": "Contraction", "churn": "Churn", "transfer_in": "Transfer in", "transfer_out": "Transfer out",
    "fx": "Exchange rates", "rounding": "Rounding", "end": "Ending MRR", "unchanged": "Unchanged",
}
# Ours: which flow a row of the net revenue drill is (core.metrics.cash)
CASH_ENTRY = {"gross": "Payment", "refunds": "Refund", "disputes": "Dispute lost"}
# Stripe's price.recurring.interval
INTERVAL = {"day": "Daily", "week": "Weekly", "month": "Monthly", "year": "Yearly"}
# Stripe's invoice statuses
INVOICE_STATUS = {"draft": "Draft", "open": "Open", "paid": "Paid", "uncollectible": "Uncollectible", "void": "Void"}

# Which mapping a column's codes come from; looked up first, then every mapping in this order.
BY_COLUMN = {
    "decline_code": DECLINE, "failure_code": DECLINE, "code": DECLINE,
    "card_brand": CARD_BRAND, "brand": CARD_BRAND,
    "cancellation_reason": CANCELLATION, "cancellation_feedback": CANCELLATION, "churn_kind": CHURN_KIND,
    "kind": CHANGE_KIND, "from_status": SUBSCRIPTION_STATUS, "to_status": SUBSCRIPTION_STATUS,
    # A drill's CSV said "churn", "transfer_in", "gross" and "paid" where the screen's charts said words.
    "interval": INTERVAL, "movement": MOVEMENT, "price_change_with_move": MOVEMENT, "entry": CASH_ENTRY, "first_invoice_status": INVOICE_STATUS,
}
# Outside the change form, "other" is just "Other": the form's "(explain in the comment)" is an
# instruction to the agent, and read as a chart's bar or a table's cell it looked like a reason.
_ALL = ({**CHANGE_REASONS, "other": "Other"}, CANCELLATION, REFUND, DECLINE, DISPUTE, CHURN_KIND)
# Columns whose stored codes read as words everywhere else too: a payment's "succeeded", an
# invoice's "subscription_cycle" and a tier's "platinum" sat beside forms saying "Premium".
CODE_COLUMNS = frozenset(BY_COLUMN) | {"reason", "status", "billing_reason", "tier", "action"}


# The areas of the audit log's actions (``area.verb``, core.audit.record's callers)
AUDIT_AREA = {"auth": "Sign-in", "change": "Member change", "staff": "Staff account", "settings": "Settings",
              "alert": "Alert", "alert_rule": "Alert rule", "member": "Member", "membership": "Membership",
              "stripe": "Stripe"}
# Whole actions whose area and verb read twice or in code ("Sign-in: login", "permission refused").
AUDIT_ACTION = {"auth.login": "Sign-in: signed in", "auth.logout": "Sign-in: signed out",
                "auth.login_failed": "Sign-in: failed", "auth.lockout": "Sign-in: locked out",
                "auth.permission_refused": "Access refused: the role lacks the permission"}


def action_label(action: str) -> str:
    """An audit action in words: ``change.refund.requested`` -> ``Member change: refund, requested``;
    ``auth.login`` -> ``Sign-in: signed in``."""
    if action in AUDIT_ACTION:
        return AUDIT_ACTION[action]
    area, _, rest = action.partition(".")
    if not rest:
        return action
    verbs = ", ".join(part.replace("_", " ") for part in rest.split("."))
    return f"{AUDIT_AREA.get(area, area.replace('_', ' ').capitalize())}: {verbs}"


def code_label(code: object, column: str | None = None) -> str:
    """The words for a stored code; ``column`` picks the mapping when a code means two things."""
    if code is None or code == "":
        return ""
    text = str(code)
    if column == "action":
        return action_label(text)
    first = BY_COLUMN.get(column or "")
    if first and text in first:
        return first[text]
    for mapping in _ALL:
        if text in mapping:
            return mapping[text]
    if text.islower() and " " not in text:
        return text.replace("_", " ").capitalize()
    return text


SCOPE_WORDS = {"decline_code": "Decline code", "card_brand": "Card brand", "card_country": "Card country",
               "currency": "Currency", "churn": "Churn", "refund": "Refund"}


def scope_label(scope: str | None) -> str:
    """An alert's scope in words: ``decline_code=insufficient_funds`` -> ``Decline code: Insufficient funds``."""
    if not scope or scope == "all":
        return "All"
    dim, sep, value = scope.partition("=")
    if not sep:
        return code_label(scope)
    words = SCOPE_WORDS.get(dim, dim.replace("_", " ").capitalize())
    if dim in ("currency", "card_country", "refund"):
        return f"{words}: {value}"
    return f"{words}: {code_label(value, 'churn_kind' if dim == 'churn' else dim)}"


# The Stripe sync's runs (sync_runs.kind / .status) and backfill state, for the Stripe sync page.
SYNC_RUN_KIND = {"incremental": "New events", "full": "Full backfill", "member": "One member"}
SYNC_RUN_STATUS = {"running": "Running", "succeeded": "Succeeded", "failed": "Failed",
                   "skipped": "Skipped (another run was going)"}


# Alerts: statuses and severities as words, a rule's slug as its title, thresholds as sentences.
ALERT_STATUS = {"open": "Open", "acknowledged": "Acknowledged", "snoozed": "Snoozed", "resolved": "Resolved"}
SEVERITY = {"low": "Low", "medium": "Medium", "high": "High", "critical": "Critical"}
ALERT_ACTOR = {"system:alerts": "Alert rules (automatic)"}
NOTIFICATION_CHANNEL = {"email": "E-mail", "webhook": "Webhook"}
NOTIFICATION_STATUS = {"pending": "Waiting to be sent", "sent": "Sent", "failed": "Given up"}


def rule_label(slug: str | None) -> str:
    """An alert rule's title (``revenue_drop`` -> ``Revenue collected below baseline``)."""
    if not slug:
        return ""
    from core.alerts import rules  # imported here: the alert checks import this module

    rule = next((r for r in rules.all_rules() if r.slug == slug), None)
    return rule.title if rule else code_label(slug)


# alert_rules.params: each threshold's words and how its value reads ("share" of one, "ratio" x
# the baseline, "points" of a percentage, "money" per currency in minor units, "steps" by severity).
THRESHOLDS: dict[str, tuple[str, str]] = {
    "window_hours": ("Window", "hours"), "lookback_hours": ("Looks back", "hours"),
    "baseline_days": ("Baseline", "days"), "baseline_weeks": ("Baseline", "weeks"),
    "min_count": ("Minimum count", "count"), "min_attempts": ("Minimum attempts", "count"),
    "min_failures": ("Minimum failures", "count"), "min_baseline_attempts": ("Baseline minimum attempts", "count"),
    "min_baseline_failures": ("Baseline minimum failures", "count"),
    "min_baseline_payments": ("Baseline minimum payments", "count"),
    "min_ratio": ("Minimum ratio", "ratio"), "min_increase": ("Minimum rise", "points"),
    "min_share_increase": ("Minimum rise of the share", "points"), "min_drop": ("Minimum drop", "share"),
    "z_min": ("Minimum z-score", "number"), "baseline_floor": ("Baseline floor", "floor"),
    "auto_resolve_hours": ("Resolves itself when clear for", "hours"),
    "first_attempts_only": ("First attempts only", "switch"), "max_amount": ("Refunds above", "money"),
    "max_hours_without_sync": ("No successful sync for", "hours"),
    "max_hours_without_event": ("No new Stripe event for", "hours"),
    "severity_steps": ("Severity", "steps"), "dimensions": ("Looks at", "dimensions"),
}


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}".rstrip("0").rstrip(".")


def severity_measure(unit: str) -> str:
    """What a rule's severity steps multiply: the amount set for a money rule (a single large
    refund), the hours allowed for a time rule (stale data), else the baseline."""
    return {"money": "the amount set", "hours": "the limit"}.get(unit, "the baseline")


def threshold_text(key: str, value: object, unit: str = "") -> str:
    """One threshold as ``words: value`` (``min_ratio`` 1.5 -> ``Minimum ratio: 1.5 × the baseline``)."""
    from core.money import format_money

    words, kind = THRESHOLDS.get(key, (code_label(key), "number"))
    if kind == "floor":  # a rate for the rate rules, a daily count for the count rules
        kind = "share" if unit == "percent" else "daily"
    if isinstance(value, dict):
        if kind == "money":
            shown = ", ".join(format_money(int(v), str(c)) for c, v in value.items())
        elif kind == "steps":
            shown = ", ".join(f"{SEVERITY.get(str(s), str(s)).lower()} from {_number(float(v))}×"
                              for s, v in value.items()) + " " + severity_measure(unit)
        else:  # switches by dimension
            on = [SCOPE_WORDS.get(str(d), code_label(str(d))).lower() for d, v in value.items() if v]
            shown = ", ".join(on) or "nothing"
        return f"{words}: {shown}"
    if isinstance(value, bool) or kind == "switch":
        return f"{words}: {'yes' if value else 'no'}"
    if not isinstance(value, int | float):
        return f"{words}: {value}"
    shown = {"hours": "at once" if value == 0 else f"{_number(value)} hour{'' if value == 1 else 's'}", "days": f"{_number(value)} days", "weeks": f"{_number(value)} weeks",
             "ratio": f"{_number(value)} × the baseline", "share": f"{_number(value * 100)}%",
             "daily": f"{_number(value)} a day",
             "points": f"{_number(value * 100)} percentage points"}.get(kind, _number(value))
    return f"{words}: {shown}"


def thresholds_text(params: dict[str, object], unit: str = "") -> str:
    """Every threshold of a rule, one ``words: value`` after another (for a table cell)."""
    return " · ".join(threshold_text(k, v, unit) for k, v in params.items())


def notify_text(notify: dict[str, object]) -> str:
    """A rule's notification targets in words, or ``Nobody (the page only)``."""
    parts = []
    for channel, words in (("email", "E-mail"), ("webhook", "Webhook")):
        targets = notify.get(channel) or []
        if isinstance(targets, list | tuple) and targets:
            parts.append(f"{words}: {', '.join(str(t) for t in targets)}")
    return " · ".join(parts) or "Nobody (the page only)"
