"""The alert rules: what each one measures, its default thresholds, and the registry.

A rule is a pure check over the database as it stood at ``now``: it reads only rows created
before ``now`` (so a replay over history sees what a cron job would have seen that day) and
returns one ``Finding`` per scope that is firing. Scopes that are not returned are "clear".
Thresholds live in ``alert_rules.params`` (merged over ``defaults``, so a new threshold gets its
default); ``enabled`` switches a rule off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from core.money import MinorUnits


@dataclass(frozen=True, slots=True)
class Finding:
    """One firing scope of a rule at one evaluation.

    ``value`` and ``baseline`` hold a ratio, a count or hours; a rule that measures money leaves
    them None and sets ``value_minor``/``baseline_minor`` (minor units of ``currency``) instead,
    through ``Finding.money``."""

    scope: str
    value: float | None
    baseline: float | None
    severity: str
    hint: str
    window_start: datetime
    window_end: datetime
    details: dict[str, Any] = field(default_factory=dict)  # unit, currency, drill-down filter, counts
    value_minor: MinorUnits | None = None
    baseline_minor: MinorUnits | None = None
    currency: str | None = None

    @classmethod
    def money(cls, scope: str, amount: MinorUnits, expected: MinorUnits, currency: str, severity: str, hint: str,
              window_start: datetime, window_end: datetime, details: dict[str, Any]) -> Finding:
        return cls(scope, None, None, severity, hint, window_start, window_end,
                   {"unit": "money", "currency": currency, **details},
                   value_minor=amount, baseline_minor=expected, currency=currency)


Check = Callable[[Connection, datetime, dict[str, Any]], list[Finding]]
# measure(conn, scope, start, end, params) -> the rule's value over one window (for the chart)
Measure = Callable[[Connection, str, datetime, datetime, dict[str, Any]], float | None]


@dataclass(frozen=True, slots=True)
class Rule:
    slug: str
    title: str
    description: str  # one sentence shown beside the rule
    unit: str  # percent, count, money, hours
    defaults: dict[str, Any]
    check: Check
    measure: Measure | None = None


REGISTRY: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    REGISTRY[rule.slug] = rule
    return rule


def get(slug: str) -> Rule:
    _load()
    try:
        return REGISTRY[slug]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"There is no alert rule “{slug}”; the rules are: {known}.") from None


def all_rules() -> list[Rule]:
    _load()
    return list(REGISTRY.values())


def _load() -> None:
    # The check modules register themselves on import; importing here avoids an import cycle.
    from core.alerts import checks_other, checks_payments  # noqa: F401


def effective_params(rule: Rule, stored: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults with the admin's stored values on top (nested dicts merged one level deep)."""
    out = dict(rule.defaults)
    for key, value in (stored or {}).items():
        if key in out and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def validate_params(rule: Rule, params: dict[str, Any]) -> dict[str, Any]:
    """Check an admin's thresholds against the defaults' shapes; raises ValueError (a sentence)."""
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if key not in rule.defaults:
            known = ", ".join(sorted(rule.defaults))
            raise ValueError(f"“{key}” is not a setting of {rule.slug}; its settings are: {known}.")
        default = rule.defaults[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError(f"{rule.slug}.{key} takes a mapping such as {default}.")
            clean[key] = {str(k): _number(rule.slug, f"{key}.{k}", v, above_zero=key.startswith(ABOVE_ZERO))
                          for k, v in value.items()}
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{rule.slug}.{key} takes true or false.")
            clean[key] = value
        else:
            clean[key] = _number(rule.slug, key, value, above_zero=key.startswith(ABOVE_ZERO))
            if isinstance(default, int) and not isinstance(default, bool):
                if clean[key] != int(clean[key]):
                    raise ValueError(f"{rule.slug}.{key} takes a whole number.")
                clean[key] = int(clean[key])
    return clean


# Limits the checks divide by, and the lengths of their windows: zero made a check fail with
# "ZeroDivisionError" at every evaluation (stripe_stale with max_hours_without_sync=0).
ABOVE_ZERO = ("max_", "baseline_", "window_", "lookback_")


def _number(slug: str, key: str, value: Any, *, above_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{slug}.{key} takes a number, not “{value}”.") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"{slug}.{key} takes a number zero or above, not “{value}”.")
    if above_zero and number == 0:
        raise ValueError(f"{slug}.{key} takes a number above zero, not “{value}”.")
    return number
