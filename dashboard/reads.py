"""Cached read helpers for the pages (Overview, Members, Audit log, Admin, Alerts) and the sign-in:
the one place page data is cached, besides the metrics registry's answers (``dashboard.metrics_data``,
and the Overview's cards in ``dashboard.kpis``).

Each helper takes no engine argument from pages: it uses ``dashboard.db.engine()`` and passes it
on as ``_engine`` (not hashed) beside the database URL (hashed), so two databases never share a
cache entry. They return DataFrames, dataclasses of plain values, or numbers; never ORM objects.
Time-to-live is short because the cookie component alone reruns each page two or three times.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import streamlit as st

from core import alerts as core_alerts
from core import member_search
from core import members as core_members
from core.audit import query as audit_query
from core.metrics import overview_counts
from core.settings import business as business_settings
from core.timeutil import utc_now, zone
from dashboard.db import engine, settings

TTL = 30


def _key() -> tuple[Any, str]:
    return engine(), settings().database_url


@st.cache_data(ttl=TTL, show_spinner=False)
def _business(_engine: Any, url: str) -> business_settings.BusinessSettings:
    return business_settings.load(_engine)


def business() -> business_settings.BusinessSettings:
    """The business settings in force (time zone, reporting currency, grace days, week start)."""
    return _business(*_key())


def business_tz() -> str:
    return business().business_timezone


@st.cache_data(ttl=TTL, show_spinner=False)
def _members_by_tier_status(_engine: Any, url: str) -> pd.DataFrame:
    return overview_counts.members_by_tier_status(_engine)


def members_by_tier_status() -> pd.DataFrame:
    return _members_by_tier_status(*_key())


@st.cache_data(ttl=TTL, show_spinner=False)
def _mrr_by_currency(_engine: Any, url: str) -> pd.DataFrame:
    return overview_counts.mrr_by_currency(_engine)


def mrr_by_currency() -> pd.DataFrame:
    return _mrr_by_currency(*_key())


@st.cache_data(ttl=TTL, show_spinner=False)
def _payments_in_month(_engine: Any, url: str, now_minute: datetime, tz: str) -> pd.DataFrame:
    return overview_counts.payments_in_month(_engine, now=now_minute, tz=tz)


def payments_this_month(now: datetime | None = None) -> tuple[date, pd.DataFrame]:
    now = (now or utc_now()).replace(second=0, microsecond=0)
    tz = business_tz()
    first, _start, _end = overview_counts.month_bounds(now, tz)
    return first, _payments_in_month(*_key(), now, tz)


@st.cache_data(ttl=TTL, show_spinner=False)
def _data_through(_engine: Any, url: str) -> tuple[datetime | None, str]:
    try:  # the Stripe sync's own answer when it is installed and has completed a run
        from core.sync import status as sync_status

        through = sync_status(_engine, recent=1).data_through
        if through is not None:
            return through, "everything in Stripe before this moment is in Memberdesk"
    except ImportError:
        pass
    return overview_counts.data_through(_engine)


def data_through() -> tuple[datetime | None, str]:
    return _data_through(*_key())


@st.cache_data(ttl=TTL, show_spinner=False)
def _open_alerts(_engine: Any, url: str) -> int:
    try:  # the alerts service's definition when it is installed
        from core.alerts.views import open_alert_count
    except ImportError:
        return overview_counts.open_alerts(_engine)
    return open_alert_count(_engine)


def open_alerts() -> int:
    return _open_alerts(*_key())


@st.cache_data(ttl=TTL, show_spinner=False)
def _search(_engine: Any, url: str, text: str, offset: int) -> member_search.SearchPage:
    return member_search.search_page(_engine, text, offset=offset)


def search_members(text: str, offset: int = 0) -> member_search.SearchPage:
    """One page of the member search (``core.member_search``): rows, true total, position."""
    return _search(*_key(), member_search.clean_query(text), max(0, int(offset)))


@st.cache_data(ttl=30, show_spinner=False)
def _recent_changes(_engine: Any, url: str, tz: str) -> pd.DataFrame:
    return core_members.recent_changes(_engine, tz=tz)


def recent_member_changes() -> pd.DataFrame:
    return _recent_changes(*_key(), business_tz())


@st.cache_data(ttl=10, show_spinner=False)
def _member(_engine: Any, url: str, member_id: int, tz: str, version: int | None,
            version_hint: int) -> core_members.MemberView | None:
    return core_members.member_view(_engine, member_id, tz=tz)


def member(member_id: int) -> core_members.MemberView | None:
    """The member page's data, cached under the member's version as the database holds it now (a
    change made by another session, or by this one's run a reload cut short, shows at once); pass
    through ``clear_member`` after a write of this session's own for good measure."""
    engine, url = _key()
    version = core_members.version_of(engine, int(member_id))
    return _member(engine, url, int(member_id), business_tz(), version,
                   st.session_state.get(f"_md_member_v_{member_id}", 0))


def member_in_flight(member_id: int) -> list[str]:
    """This member's requests not finished yet, read at every run (a few rows by index)."""
    from core.changes import queries

    return queries.in_flight(_key()[0], int(member_id))


def clear_member(member_id: int) -> None:
    """Make the next ``member(member_id)`` read fresh data (after a note or an action)."""
    key = f"_md_member_v_{member_id}"
    st.session_state[key] = st.session_state.get(key, 0) + 1
    _search.clear()


def stripe_test_mode() -> bool:
    s = settings()
    return core_members.is_test_mode(s.stripe_api_key, s.stripe_api_base)


@st.cache_data(ttl=10, show_spinner=False)
def _audit(_engine: Any, url: str, actor: str | None, member_id: int | None, action: str | None,
           start: date | None, end: date | None, tz: str) -> audit_query.AuditPage:
    return audit_query.entries(_engine, actor=actor, member_id=member_id, action=action, start=start, end=end, tz=tz)


def audit_entries(*, actor: str | None = None, member_id: int | None = None, action: str | None = None,
                  start: date | None = None, end: date | None = None) -> audit_query.AuditPage:
    return _audit(*_key(), actor or None, member_id, action or None, start, end, business_tz())


@st.cache_data(ttl=30, show_spinner=False)
def _audit_facets(_engine: Any, url: str) -> tuple[list[str], list[str]]:
    return audit_query.facets(_engine)


def audit_facets() -> tuple[list[str], list[str]]:
    return _audit_facets(*_key())


@st.cache_data(ttl=300, show_spinner=False)
def _alert_series(_engine: Any, url: str, alert_id: int, fired: datetime | None) -> list[dict[str, Any]]:
    return core_alerts.history_series(_engine, alert_id)


def alert_series(alert_id: int, fired: datetime | None) -> list[dict[str, Any]]:
    """An alert's value over its recent windows (for its chart); read again when it fires again."""
    return _alert_series(*_key(), alert_id, fired)


@st.cache_data(ttl=300, show_spinner=False)
def _alert_rows(_engine: Any, url: str, alert_id: int, fired: datetime | None) -> dict[str, list[dict[str, Any]]]:
    return core_alerts.affected_rows(_engine, alert_id)


def alert_rows(alert_id: int, fired: datetime | None) -> dict[str, list[dict[str, Any]]]:
    """The payments, refunds, disputes or subscriptions behind an alert, and their members."""
    return _alert_rows(*_key(), alert_id, fired)


@st.cache_data(ttl=10, show_spinner=False)
def _signable_accounts(_engine: Any, url: str) -> dict[str, dict[str, Any]]:
    from core import staff

    return staff.signable(_engine, utc_now())


def signable_accounts() -> dict[str, dict[str, Any]]:
    """Active, unlocked accounts as the plain dict streamlit-authenticator wants (cached briefly:
    the cookie component adds reruns; the database is asked again at every attempt anyway)."""
    return _signable_accounts(*_key())


def clear_signable_accounts() -> None:
    _signable_accounts.clear()


def clear_all() -> None:
    """After an admin change: every cached read of this module starts fresh."""
    for fn in (_business, _members_by_tier_status, _mrr_by_currency, _payments_in_month, _data_through,
               _open_alerts, _search, _member, _audit, _audit_facets, _staff, _fx_rates):
        fn.clear()


@st.cache_data(ttl=5, show_spinner=False)
def _staff(_engine: Any, url: str, tz: str) -> pd.DataFrame:
    from core import staff
    from core.timeutil import zone

    z, now = zone(tz), utc_now()
    rows = [{
        "username": v.username, "name": v.name, "email": v.email, "roles": ", ".join(v.roles),
        "active": v.active, "locked_until": v.locked_until.astimezone(z) if v.locked_until and
        v.locked_until > now else None,
        # A pause of sign-ins from one address leaves the owner free to sign in from elsewhere.
        "locked_for": ("everyone" if v.locked_everywhere else
                       "1 address" if v.paused_places == 1 else f"{v.paused_places} addresses")
        if v.locked_until and v.locked_until > now else None,
        "failed_sign_ins_15_min": failures,
        "last_sign_in": v.last_login_at.astimezone(z) if v.last_login_at else None,
    } for v, failures in staff.accounts(_engine, now)]
    return pd.DataFrame(rows, columns=["username", "name", "email", "roles", "active", "locked_until", "locked_for",
                                       "failed_sign_ins_15_min", "last_sign_in"])


def staff_accounts() -> pd.DataFrame:
    """Every staff account with its lockout state (times in the business time zone)."""
    return _staff(*_key(), business_tz())


@st.cache_data(ttl=30, show_spinner=False)
def _fx_rates(_engine: Any, url: str) -> pd.DataFrame:
    rates = business_settings.list_rates(_engine)
    return pd.DataFrame([{"currency": r.currency, "month": r.month, "usd_per_unit": r.usd_per_unit,
                          "updated_by": r.updated_by} for r in rates],
                        columns=["currency", "month", "usd_per_unit", "updated_by"])


def rate_text(rate: Decimal) -> str:
    """A rate as people read it: at most six decimals, at least two (``1.0850000000`` -> ``1.085``)."""
    text = f"{Decimal(rate):.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


def fx_rates(today: date | None = None) -> pd.DataFrame:
    """The FX table behind the reporting currency (see ``fx_table``), as of today in the business zone."""
    return fx_table(_fx_rates(*_key()), today or utc_now().astimezone(zone(business_tz())).date())


def fx_table(rates: pd.DataFrame, today: date) -> pd.DataFrame:
    """Rates opening on ``today``'s month and the ones before it (newest first); months already set
    ahead follow, soonest first. Months as ``YYYY-MM``, rates with at most six decimals."""
    this_month = today.replace(day=1)
    later = [m > this_month for m in rates["month"]]
    order = [m.toordinal() if ahead else -m.toordinal() for m, ahead in zip(rates["month"], later, strict=True)]
    frame = (rates.assign(_later=later, _order=order).sort_values(["_later", "_order", "currency"], ignore_index=True)
             .drop(columns=["_later", "_order"]))
    frame["month"] = [f"{m:%Y-%m}" for m in frame["month"]]
    frame["usd_per_unit"] = [rate_text(r) for r in frame["usd_per_unit"]]
    return frame
