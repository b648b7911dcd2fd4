"""Alerts that catch payment trouble early and say why.

Public API (everything else is internal):
- ``evaluate(engine, now)`` runs the rules (idempotent, safe in parallel); ``evaluate_if_stale``
  runs it when the last evaluation is older than a few minutes; ``background.start_if_stale``
  starts that beside the page, without waiting for it; ``last_evaluated_at``.
- ``open_alert_count(engine)`` for the Overview; ``list_alerts``, ``alert_detail``,
  ``history_series``, ``affected_rows``, ``rule_table`` for the page and the CLI.
- ``acknowledge``, ``resolve``, ``snooze`` (MANAGE_ALERTS, with a note) and ``configure_rule``.
See docs/alerts.md for the rules, their defaults and the measured alert rate.
"""

from core.alerts.evaluate import (
    EvaluationResult,
    configure_rule,
    configure_rule_from_form,
    evaluate,
    evaluate_if_stale,
    last_evaluated_at,
    rule_configs,
)
from core.alerts.lifecycle import STATUSES, AlertError, acknowledge, resolve, snooze
from core.alerts.views import (
    affected_rows,
    alert_detail,
    history_series,
    latest_resolved,
    list_alerts,
    open_alert_count,
    rule_table,
)

__all__ = [
    "STATUSES", "AlertError", "EvaluationResult", "acknowledge", "affected_rows", "alert_detail",
    "configure_rule", "configure_rule_from_form", "evaluate", "evaluate_if_stale", "history_series", "last_evaluated_at", "latest_resolved", "list_alerts",
    "open_alert_count", "resolve", "rule_configs", "rule_table", "snooze",
]
