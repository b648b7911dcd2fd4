"""Business settings that shape every number: time zone, reporting currency, grace days, week
start, and the FX table behind the reporting currency.

Guarantees:
- ``load(engine)`` always answers: keys missing from the ``settings`` table take their
  defaults (UTC, USD, no grace days, Monday).
- ``save`` and ``save_rate`` take the acting staff member and need EDIT_SETTINGS (admins); they
  validate first (a refusal is a ``BusinessSettingsError`` whose text is one sentence), then
  write the row and an audit entry (before/after) in a transaction of their own: both commit
  together or not at all. Every caller (the Admin page, the CLI, tests) uses these two.
- A rate typed as text must be a plain decimal (digits and a decimal point: "1e3" or "1,30" is
  refused, not read as 1000 or 130), and a rate more than ``MAX_MOVE`` (25 %) from the
  currency's nearest known rate (a 100x typo: 116 for 1.16) is refused with a sentence naming
  both, unless the person confirms the move (``confirm_move``; the audit entry says so).
- Default FX rates for USD, EUR, GBP and JPY (36 months back from the migration date plus the
  current year) are seeded by migration 0002, so conversion works out of the box; an admin edits
  them here. A month without its own rate uses the latest earlier month of that currency.
- A change to a definition setting (time zone, grace days, week start) marks the metric rollups
  stale; ``core.metrics.rollups`` rebuilds them before the next answer, so it takes effect
  everywhere at once.
- ``load`` also names the FX table's state (``fx_rates_digest``, ``fx_rates_changed_at``), so
  every answer kept for a question (the Overview's cards, the pages' cached bundles), keyed by
  the settings, is keyed by the rates it was converted with: a saved rate is a new question on the
  next page load, in every session. No rollup holds a converted amount (they keep each original
  currency; conversion happens when a page is answered), so a rate change needs no rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import audit
from core.db import session_scope
from core.models import FxRate, Setting
from core.money import SUPPORTED_CURRENCIES, MoneyError, normalise_currency
from core.permissions import Actor, Permission, guarded
from core.timeutil import WEEKDAYS, utc_now, zone

KEYS = ("business_timezone", "reporting_currency", "past_due_grace_days", "week_start")
# Settings whose change alters what a rollup row means; rollups are rebuilt when one changes.
DEFINITION_KEYS = ("business_timezone", "past_due_grace_days", "week_start")


# The default FX rates (USD per unit, yearly averages, rounded) that migration 0002 seeds. A
# currency with no row at all in ``fx_rates`` (e.g. an emptied table) falls back to these, so
# conversion always works; any row an admin sets wins.
DEFAULT_RATES: dict[int, dict[str, str]] = {
    2023: {"EUR": "1.08", "GBP": "1.24", "JPY": "0.0071"},
    2024: {"EUR": "1.08", "GBP": "1.28", "JPY": "0.0066"},
    2025: {"EUR": "1.13", "GBP": "1.32", "JPY": "0.0067"},
    2026: {"EUR": "1.16", "GBP": "1.34", "JPY": "0.0065"},
    2027: {"EUR": "1.16", "GBP": "1.34", "JPY": "0.0065"},
}


class BusinessSettingsError(ValueError):
    """A setting or rate we cannot accept; str(error) is the sentence to show."""


class RateMoveError(BusinessSettingsError):
    """A rate far from the nearest known one: saved only when the move is confirmed."""


@dataclass(frozen=True, slots=True)
class BusinessSettings:
    business_timezone: str = "UTC"
    reporting_currency: str = "USD"
    past_due_grace_days: int | None = None
    week_start: str = "monday"
    # The FX table the reporting currency converts through, as ``load`` found it: a digest of
    # every row (any saved rate changes it, so answers kept under these settings are answers at
    # these rates) and its last change, for people ("FX rates as of ..."). Empty and None: no row
    # at all, the built-in DEFAULT_RATES.
    fx_rates_digest: str = ""
    fx_rates_changed_at: datetime | None = None

    @property
    def week_start_index(self) -> int:
        return WEEKDAYS.index(self.week_start)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _validate(key: str, value: Any) -> Any:
    if key == "business_timezone":
        try:
            zone(str(value))
        except ValueError as exc:
            raise BusinessSettingsError(str(exc)) from None
        return str(value)
    if key == "reporting_currency":
        try:
            code = normalise_currency(str(value))
        except MoneyError as exc:
            raise BusinessSettingsError(str(exc)) from None
        if code not in SUPPORTED_CURRENCIES:
            raise BusinessSettingsError(
                f"{code} is not one of the currencies we sell in ({', '.join(SUPPORTED_CURRENCIES)}).")
        return code
    if key == "past_due_grace_days":
        if value is None or value == "":
            return None
        try:
            days = int(str(value).strip())
        except ValueError:
            raise BusinessSettingsError(f"“{value}” is not a whole number of days.") from None
        if not 0 <= days <= 365:
            raise BusinessSettingsError("Grace days must be between 0 and 365, or empty for none.")
        return days
    if key == "week_start":
        day = str(value).strip().lower()
        if day not in WEEKDAYS:
            raise BusinessSettingsError(f"“{value}” is not a weekday; use a name such as monday.")
        return day
    raise BusinessSettingsError(f"“{key}” is not a business setting; use one of {', '.join(KEYS)}.")


def load(engine: Engine) -> BusinessSettings:
    """The settings in force now (defaults for keys never set)."""
    with Session(engine) as session:
        return _read(session)


def _read(session: Session) -> BusinessSettings:
    rows = session.execute(select(Setting.key, Setting.value).where(Setting.key.in_(KEYS))).all()
    values: dict[str, Any] = {}
    for key, value in rows:
        try:
            values[key] = _validate(key, value)
        except BusinessSettingsError:
            continue  # a corrupt row falls back to the default rather than breaking every page
    digest, changed_at = _rates_state(session)
    return BusinessSettings(**values, fx_rates_digest=digest, fx_rates_changed_at=changed_at)


def _rates_state(session: Session) -> tuple[str, datetime | None]:
    """A digest of every FX row and the last time one was saved. The digest is of the rates
    themselves, not of the save times: two saves committing out of order leave the latest
    ``updated_at`` where it was, while the rates (and so the digest) still change. A few hundred
    rows (a rate per currency and month): read in a millisecond."""
    rows = session.execute(select(FxRate.currency, FxRate.month, FxRate.usd_per_unit, FxRate.updated_at)
                           .order_by(FxRate.currency, FxRate.month)).all()
    if not rows:
        return "", None
    text = "\n".join(f"{cur} {month:%Y-%m} {Decimal(rate).normalize()}" for cur, month, rate, _at in rows)
    return hashlib.sha256(text.encode()).hexdigest()[:16], max(at for *_rest, at in rows)


def _update(session: Session, *, actor: Actor, reason: str | None = None, **changes: Any) -> BusinessSettings:
    """Validate and write ``changes``; one audit entry with before/after. ``save`` commits."""
    if not changes:
        raise BusinessSettingsError("Nothing to change.")
    clean = {key: _validate(key, value) for key, value in changes.items()}
    before = _read(session)
    after = dataclasses.replace(before, **clean)
    now = utc_now()
    for key, value in clean.items():
        row = session.get(Setting, key)
        if row is None:
            session.add(Setting(key=key, value=value, updated_at=now, updated_by=actor.username))
        else:
            row.value, row.updated_at, row.updated_by = value, now, actor.username
    changed = {k: v for k, v in clean.items() if getattr(before, k) != v}
    # The keys changed are in before/after; target_id is short by schema (64 characters).
    audit.record(session, actor=actor.username, action="settings.update", target_type="settings",
                 target_id="business", reason=reason,
                 before={k: getattr(before, k) for k in clean}, after=clean)
    if any(k in DEFINITION_KEYS for k in changed):
        _mark_rollups_stale(session)
    session.flush()
    return after


def _mark_rollups_stale(session: Session) -> None:
    # Imported here: the metrics package imports this module.
    from sqlalchemy import event

    from core.metrics import refresher
    from core.metrics.rollups import mark_stale

    mark_stale(session)
    bind = session.get_bind()
    engine = bind.engine  # a session bound to a connection: its engine (an Engine's is itself)

    def rebuild(_session: Session) -> None:
        # Rebuilt in the background once the change is committed; pages read the raw rows
        # meanwhile. Never fails the commit that asked for it.
        try:
            refresher.request(engine, None, what="a settings change")
        except Exception:
            logging.getLogger(__name__).exception("could not ask for the metric rollups' rebuild")

    event.listen(session, "after_commit", rebuild, once=True)


# ---------------------------------------------------------------- FX rates

@dataclass(frozen=True, slots=True)
class Rate:
    currency: str
    month: date
    usd_per_unit: Decimal
    updated_by: str


def list_rates(engine: Engine, currency: str | None = None) -> list[Rate]:
    stmt = select(FxRate).order_by(FxRate.currency, FxRate.month)
    if currency:
        stmt = stmt.where(FxRate.currency == normalise_currency(currency))
    with Session(engine) as session:
        return [Rate(r.currency, r.month, Decimal(r.usd_per_unit), r.updated_by) for r in session.scalars(stmt)]


def _month(value: date | str) -> date:
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = date.fromisoformat(text + "-01" if len(text) == 7 else text)
        except ValueError:
            raise BusinessSettingsError(f"“{value}” is not a month; use YYYY-MM.") from None
        return parsed.replace(day=1)
    return value.replace(day=1)


# A rate as a person types it: digits with at most one decimal point, a sign at most. No exponent
# ("1e3" was saved as 1000), no thousands separators or underscores, no "Infinity".
_PLAIN_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
RATE_DECIMALS = 10  # the column's scale (Numeric(20, 10)): more would be rounded away silently
MAX_MOVE = Decimal("0.25")  # a rate this far from the nearest known one is most often a typo


def _rate(value: Decimal | str | float) -> Decimal:
    """The rate given, refused unless it is a positive plain decimal the table can hold."""
    if isinstance(value, str):
        text = value.strip()
        if not _PLAIN_DECIMAL.fullmatch(text):
            raise BusinessSettingsError(f"“{value}” is not a number written plainly: use digits and a decimal "
                                        "point, such as 1.0850 (no exponent, no thousands separators).")
        rate = Decimal(text)
    else:
        try:
            rate = value if isinstance(value, Decimal) else Decimal(str(value))
        except InvalidOperation:
            raise BusinessSettingsError(f"“{value}” is not a number.") from None
    if not rate.is_finite() or rate <= 0:
        raise BusinessSettingsError("A rate must be a positive number (US dollars per one unit).")
    if rate > Decimal(100000):
        raise BusinessSettingsError("That rate is implausibly large; enter US dollars per one unit.")
    if rate != rate.quantize(Decimal(1).scaleb(-RATE_DECIMALS)):
        raise BusinessSettingsError(f"A rate has at most {RATE_DECIMALS} decimals.")
    return rate


def _plain(rate: Decimal) -> str:
    """A rate as it was typed, without trailing zeros (``1.1600000000`` -> ``1.16``)."""
    return f"{rate.normalize():f}"


def _nearest_known(session: Session, code: str, month: date) -> tuple[Decimal, str] | None:
    """The rate of ``code`` in the month nearest to ``month`` (its own when it has one; the earlier
    of two as near), with words for where it comes from; the built-in default of the nearest year
    when the table holds none for the currency (what conversion uses then). None: nothing known."""
    rows = session.execute(select(FxRate.month, FxRate.usd_per_unit).where(FxRate.currency == code)).all()
    if rows:
        near, rate = min(rows, key=lambda r: (abs((r[0] - month).days), r[0] > month))
        return Decimal(rate), f"{near:%Y-%m}"
    year = min(max(month.year, min(DEFAULT_RATES)), max(DEFAULT_RATES))
    default = DEFAULT_RATES[year].get(code)
    return None if default is None else (Decimal(default), f"the built-in default for {year}")


def _check_move(session: Session, code: str, month: date, rate: Decimal) -> None:
    """Refuse a rate more than ``MAX_MOVE`` from the nearest known one: a 100x or 1000x typo (a
    decimal point in the wrong place) would turn every converted figure."""
    known = _nearest_known(session, code, month)
    if known is None:
        return
    old, where = known
    move = rate / old - 1
    if abs(move) > MAX_MOVE:
        raise RateMoveError(
            f"The {code} rate for {month:%Y-%m} would go from {_plain(old)} (the nearest known rate, {where}) to "
            f"{_plain(rate)}, a move of {move:+,.0%}. A move over {MAX_MOVE:.0%} is most often a typo, such as a "
            "decimal point in the wrong place; if the rate is right, confirm the move and save it again.")


def _set_rate(session: Session, *, actor: Actor, currency: str, month: date | str,
              usd_per_unit: Decimal | str | float, reason: str | None = None, confirm_move: bool = False) -> Rate:
    """Insert or replace the rate of ``currency`` for ``month``; audited. ``save_rate`` commits.
    ``confirm_move``: the person confirmed a move over ``MAX_MOVE`` (recorded in the audit entry)."""
    try:
        code = normalise_currency(currency)
    except MoneyError as exc:
        raise BusinessSettingsError(str(exc)) from None
    if code == "USD":
        raise BusinessSettingsError("USD is the base of the rate table; its rate is always 1.")
    first = _month(month)
    rate = _rate(usd_per_unit)
    confirmed = False
    try:
        _check_move(session, code, first, rate)
    except RateMoveError:
        if not confirm_move:
            raise
        confirmed = True
    row = session.scalar(select(FxRate).where(FxRate.currency == code, FxRate.month == first))
    before = None if row is None else str(row.usd_per_unit)
    now = utc_now()
    if row is None:
        row = FxRate(currency=code, month=first, usd_per_unit=rate, updated_at=now, updated_by=actor.username)
        session.add(row)
    else:
        row.usd_per_unit, row.updated_at, row.updated_by = rate, now, actor.username
    audit.record(session, actor=actor.username, action="settings.fx_rate", target_type="fx_rate",
                 target_id=f"{code}:{first:%Y-%m}", reason=reason,
                 before=None if before is None else {"usd_per_unit": before},
                 after={"usd_per_unit": str(rate), **({"move_confirmed": True} if confirmed else {})})
    session.flush()
    return Rate(code, first, rate, actor.username)


def reporting_currency(session: Session) -> str:
    """The reporting currency in force, read in the caller's transaction."""
    return _read(session).reporting_currency


# ------------------------------------------------ changes that own their transaction

@guarded(Permission.EDIT_SETTINGS)
def save(engine: Engine, *, actor: Actor, reason: str | None = None, **changes: Any) -> BusinessSettings:
    """Validate and write ``changes`` in a transaction of its own: the settings and their audit
    entry commit together."""
    with session_scope(engine) as s:
        return _update(s, actor=actor, reason=reason, **changes)


@guarded(Permission.EDIT_SETTINGS)
def save_rate(engine: Engine, *, actor: Actor, currency: str, month: date | str,
              usd_per_unit: Decimal | str | float, reason: str | None = None, confirm_move: bool = False) -> Rate:
    """Insert or replace the rate of ``currency`` for ``month`` in a transaction of its own: the
    rate and its audit entry commit together. A rate typed as text must be a plain decimal; one
    more than ``MAX_MOVE`` from the currency's nearest known rate is refused (``RateMoveError``,
    naming both) unless ``confirm_move``."""
    with session_scope(engine) as s:
        return _set_rate(s, actor=actor, currency=currency, month=month, usd_per_unit=usd_per_unit, reason=reason,
                         confirm_move=confirm_move)
