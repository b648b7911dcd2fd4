"""Per-role limits on manual changes, configured by admins, kept in the ``settings`` table.

The effective limit of a person is the most generous of their roles. A role missing from a
limit may not do that action beyond zero (for amounts) or at all (for days). ``None`` means
"no limit". Refunds above ``approval_refund_above`` (per currency) always wait for a second
person, whoever asks. A refund in a currency without an approval amount of its own (CAD, say) is
held to the reporting currency's amount, converted at the reports' FX rate for the month; without
a rate for it, every such refund waits for a second person (``approval_for``).

Refund limits cannot be split: the amount a limit and the approval threshold compare is the
larger of (what the payment has had refunded, plus this refund) and (what the member has had
refunded in the payment's currency over the last ``refund_window_hours``, plus this refund).
Four refunds of $49.99 are one refund of $199.96 to the limits.

The defaults make every documented flow reachable: support may refund up to $250 (so a support
refund of an annual Platinum payment, $199.99, is possible) and anything above $100 waits for a
second person (so that refund asks for approval).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import audit
from core.changes.errors import ChangeRefused
from core.db import session_scope
from core.metrics.fx import RateTable
from core.metrics.types import MetricError
from core.models import Setting
from core.money import SUPPORTED_CURRENCIES, format_money
from core.permissions import Actor, Permission, guarded
from core.settings import business
from core.timeutil import utc_now

SETTING_KEY = "changes.limits"

DEFAULTS: dict[str, Any] = {
    # days of free time one person may add in one change (extend and complimentary grants)
    "extend_max_days": {"support": 30, "manager": 365, "admin": 365},
    # most a role may refund per payment, and per member within the window, per currency (minor
    # units); None = no limit. Above the approval amount, so support's large refunds reach approval.
    "refund_max": {
        "support": {"USD": 25000, "EUR": 25000, "GBP": 20000, "JPY": 37500},
        "finance": None,
        "manager": None,
        "admin": None,
    },
    # refunds above this amount (counted like the limit) wait for a second person, whoever asks;
    # below the demo's annual Platinum price (199.99 / 179.99 / 159.99 / 24,000), above its annual
    # Premium price (99.99 / 89.99 / 79.99 / 12,000)
    "approval_refund_above": {"USD": 10000, "EUR": 10000, "GBP": 8000, "JPY": 15000},
    # the member's refunds over this many hours count toward the limits with the payment's own
    "refund_window_hours": 24,
}


@dataclass
class Limits:
    extend_max_days: dict[str, int | None] = field(default_factory=dict)
    refund_max: dict[str, dict[str, int] | None] = field(default_factory=dict)
    approval_refund_above: dict[str, int] = field(default_factory=dict)
    refund_window_hours: int = 24

    @classmethod
    def from_value(cls, value: dict[str, Any] | None) -> Limits:
        merged = copy.deepcopy(DEFAULTS)
        if isinstance(value, dict):
            merged.update({k: v for k, v in value.items() if k in DEFAULTS})
        return cls(**merged)

    def to_value(self) -> dict[str, Any]:
        return {"extend_max_days": self.extend_max_days, "refund_max": self.refund_max,
                "approval_refund_above": self.approval_refund_above,
                "refund_window_hours": self.refund_window_hours}

    def max_extend_days(self, roles: Iterable[str]) -> int | None:
        """Most days any of ``roles`` may add; None = unlimited, 0 = not allowed."""
        return _most_generous(roles, self.extend_max_days, lambda days: days)

    def max_refund(self, roles: Iterable[str], currency: str) -> int | None:
        """Largest refund any of ``roles`` may make in ``currency``; None = unlimited."""
        return _most_generous(roles, self.refund_max, lambda caps: caps.get(currency))

    def needs_approval(self, amount_minor: int, currency: str) -> bool:
        threshold = self.approval_refund_above.get(currency)
        return threshold is not None and amount_minor > int(threshold)

    def describe(self) -> list[str]:
        lines = []
        for role, days in sorted(self.extend_max_days.items()):
            lines.append(f"{role}: extend up to {'any number of' if days is None else days} days")
        for role, caps in sorted(self.refund_max.items()):
            if caps is None:
                lines.append(f"{role}: refund any amount")
            else:
                amounts = ", ".join(format_money(v, c) for c, v in sorted(caps.items()))
                lines.append(f"{role}: refund up to {amounts}")
        amounts = ", ".join(format_money(v, c) for c, v in sorted(self.approval_refund_above.items()))
        lines.append(f"refunds above {amounts} need a second person's approval; in another currency, above the "
                     "reporting currency's amount at our exchange rate, or always when it has no rate")
        lines.append(f"refund limits count what was already refunded on the payment, and on the member "
                     f"in the last {self.refund_window_hours} hours")
        return lines


@dataclass(frozen=True, slots=True)
class Approval:
    """Whether a refund waits for a second person, and the amount it was held to: ``threshold`` in
    ``currency`` (the refund's own, or the reporting currency's); ``converted``: the counted refund
    in that currency when it had to be converted, at the rates of ``rate_month``. ``threshold`` is
    None when no amount could apply (no rate): the refund then always waits."""

    needs: bool
    threshold: int | None
    currency: str
    converted: int | None = None
    rate_month: date | None = None


def approval_for(session: Session, limits: Limits, counted: int, currency: str, when: datetime) -> Approval:
    """The approval rule for a refund of ``counted`` (minor units of ``currency``, counted like the
    limits) made at ``when``. A currency without its own approval amount must not escape four eyes:
    it is converted to the reporting currency's amount, or waits for approval when that cannot be done."""
    own = limits.approval_refund_above.get(currency)
    if own is not None:
        return Approval(limits.needs_approval(counted, currency), int(own), currency)
    reporting = business.reporting_currency(session)
    threshold = limits.approval_refund_above.get(reporting)
    month = when.date().replace(day=1)
    if threshold is None:
        return Approval(True, None, reporting)
    try:  # the reports' own conversion (core.metrics.fx): the month's rate, else the latest earlier
        converted = RateTable.load(session.get_bind().engine).convert(counted, currency, reporting, month)
    except MetricError:  # no rate for the currency anywhere
        return Approval(True, None, reporting)
    return Approval(converted > int(threshold), int(threshold), reporting, converted, month)


def load_limits(session: Session) -> Limits:
    value = session.scalar(select(Setting.value).where(Setting.key == SETTING_KEY))
    return Limits.from_value(value)


def _most_generous(roles: Iterable[str], per_role: Mapping[str, Any], pick: Callable[[Any], Any]) -> int | None:
    """The largest limit among ``roles`` (``pick`` reads it from a role's entry; None there: that
    role has none for this); None when a role's entry is None (unlimited); 0 when no role has one."""
    best = 0
    for role in roles:
        if role not in per_role:
            continue
        entry = per_role[role]
        if entry is None:
            return None
        value = pick(entry)
        if value is not None:
            best = max(best, int(value))
    return best


def _check(limits: Limits) -> None:
    roles = {"support", "finance", "manager", "admin"}
    for role, days in limits.extend_max_days.items():
        if role not in roles:
            raise ChangeRefused(f"“{role}” is not a role.")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 3650):
            raise ChangeRefused("Day limits are whole numbers between 0 and 3650.")
    for role, caps in limits.refund_max.items():
        if role not in roles:
            raise ChangeRefused(f"“{role}” is not a role.")
        for currency, amount in (caps or {}).items():
            _check_amount(currency, amount)
    for currency, amount in limits.approval_refund_above.items():
        _check_amount(currency, amount)
    hours = limits.refund_window_hours
    if not isinstance(hours, int) or isinstance(hours, bool) or not 0 <= hours <= 24 * 31:
        raise ChangeRefused("The refund window is a whole number of hours between 0 and 744 (31 days).")


def _check_amount(currency: str, amount: Any) -> None:
    if currency not in SUPPORTED_CURRENCIES:
        raise ChangeRefused(f"“{currency}” is not a currency we sell in.")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise ChangeRefused("Amount limits are zero or more, in minor units.")


@guarded(Permission.EDIT_SETTINGS)
def save_limits(engine: Engine, *, actor: Actor, limits: Limits, now: datetime | None = None) -> None:
    """Replace the limits (admins only); audited with before and after, in one transaction."""
    _check(limits)
    with session_scope(engine) as s:
        _save(s, actor, limits, now or utc_now())


def _save(session: Session, actor: Actor, limits: Limits, now: datetime) -> None:
    before = load_limits(session).to_value()
    row = session.get(Setting, SETTING_KEY)
    if row is None:
        session.add(Setting(key=SETTING_KEY, value=limits.to_value(), updated_at=now, updated_by=actor.username))
    else:
        row.value, row.updated_at, row.updated_by = limits.to_value(), now, actor.username
    audit.record(session, actor=actor.username, action="settings.change_limits", target_type="setting",
                 target_id=SETTING_KEY, before=before, after=limits.to_value())


def from_form(current: Limits, *, extend_days: dict[str, Any], support_refund_major: dict[str, Any],
              approval_major: dict[str, Any], refund_window_hours: Any = None) -> Limits:
    """Build new limits from what an admin typed (days as numbers, amounts in major units)."""
    from core.changes import parse

    updated = Limits.from_value(current.to_value())
    for role, days in extend_days.items():
        updated.extend_max_days[role] = parse.whole_number(days, f"day limit for {role}", low=0, high=3650)
    caps = dict(updated.refund_max.get("support") or {})
    for currency, text in support_refund_major.items():
        caps[currency] = _major(text, currency)
    updated.refund_max["support"] = caps
    for currency, text in approval_major.items():
        updated.approval_refund_above[currency] = _major(text, currency)
    if refund_window_hours not in (None, ""):
        updated.refund_window_hours = parse.whole_number(refund_window_hours, "refund window in hours", low=0,
                                                         high=24 * 31)
    _check(updated)
    return updated


def _major(text: Any, currency: str) -> int:
    from core.money import MoneyError, parse_major

    try:
        value = parse_major(str(text), currency)
    except MoneyError as exc:
        raise ChangeRefused(str(exc)) from None
    if value < 0:
        raise ChangeRefused("Amount limits are zero or more.")
    return value
