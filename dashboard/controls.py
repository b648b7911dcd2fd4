"""The shared controls of the finance pages: date range, granularity, money view and filters.

Guarantees:
- Every control's state lives in the URL's query parameters (``from``, ``to``, ``grain``,
  ``money``, ``tier``, ``interval``, ``country``), so a view can be bookmarked or
  pasted to a colleague and opens exactly as it was. A control left at its default adds no
  parameter (the page's default range is to today, wherever the link is opened): a visit
  from the sidebar then adds one history entry, and Back leaves the page at the first press.
- A query parameter that does not parse is ignored (the default is used) and the page says so
  in one sentence; it never raises.
- The controls hold choices only. They do no arithmetic on amounts and read nothing from the
  database: the pages pass in the filter options and today's date in the business time zone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import streamlit as st

from core.labels import code_label
from core.timeutil import GRANULARITIES
from dashboard.text import md

REPORTING = "reporting"  # the money-view value meaning "convert to the reporting currency"
GRANULARITY_LABELS = {"day": "Day", "week": "Week", "month": "Month"}
FILTERS = ("tier", "interval", "country")  # the original currency is the "Money" control
ALL = "__all__"
FILTER_PLURALS = {"tier": "tiers", "interval": "intervals", "currency": "currencies", "country": "countries"}
FILTER_LABELS = {"tier": "Tier", "interval": "Billing interval", "currency": "Currency", "country": "Country"}


def _filter_choice(f: str, v: Any) -> str:
    """A filter's choice as the select box shows it (``ALL`` is "All tiers", ...): tiers and
    intervals in words ("Premium", "Monthly"), as the tables and charts beside it write them;
    currencies and countries as their codes."""
    if v == ALL:
        return f"All {FILTER_PLURALS[f]}"
    return code_label(v, f) if f in ("tier", "interval") else v


@dataclass(frozen=True)
class Controls:
    """What the person chose. ``end`` is the last local day included (the registry's query gets
    the half-open bound)."""

    start: date
    end: date
    granularity: str = "month"
    money: str = REPORTING  # REPORTING or one original currency code ("USD", "JPY", ...)
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def per_currency(self) -> str | None:
        return None if self.money == REPORTING else self.money

    def describe(self, reporting_currency: str) -> str:
        """One line naming the view, for captions and CSV file names."""
        money = f"in {reporting_currency} (converted)" if self.money == REPORTING else f"{self.money} amounts only"
        chosen = [f"{FILTER_LABELS[k].lower()} {', '.join(v)}" for k, v in self.filters.items() if v]
        where = f"; {'; '.join(chosen)}" if chosen else ""
        return f"{self.start:%Y-%m-%d} – {self.end:%Y-%m-%d} by {self.granularity}, {money}{where}"


@dataclass(frozen=True)
class FilterOptions:
    tier: Sequence[str] = ()
    interval: Sequence[str] = ()
    currency: Sequence[str] = ()
    country: Sequence[str] = ()


def _param(name: str) -> str | None:
    values = st.query_params.get_all(name)
    return values[-1] if values else None


def _parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def render(page: str, *, today: date, default_start: date, options: FilterOptions,
           reporting_currency: str, with_granularity: bool = True, with_money: bool = True,
           with_filters: Sequence[str] = FILTERS) -> Controls:
    """Draw the controls in one row (plus an expander for filters) and return the choices.

    ``page`` prefixes the widget keys so two pages never share widget state.
    """
    problems: list[str] = []  # about the choices made on the page
    # About the link, each with the controls it concerns: said only while the person has not
    # changed those controls (after choosing Week, "“hour” is not a granularity" stayed a run).
    linked: list[tuple[frozenset[str], str]] = []
    dates, grains, monies = frozenset({"range"}), frozenset({"grain"}), frozenset({"money"})
    q_from, q_to = _param("from"), _param("to")
    start, end = _parse_date(q_from), _parse_date(q_to)
    if (q_from and start is None) or (q_to and end is None):
        linked.append((dates, "A date in the link was not a date (use YYYY-MM-DD); the default range is shown."))
    # One end given: the range runs from it to today, or up to it (a link with only ?from= was
    # dropped without a word, even a future one).
    if start is not None and end is None:
        if start > today:
            linked.append((dates, "The link's start date is after today; the default range is shown."))
            start = default_start
        end = today
    elif end is not None and start is None:
        start = min(default_start, end)
    if start is None or end is None or start > end:
        if start and end and start > end:
            linked.append((dates, "The link's start date was after its end date; the default range is shown."))
        start, end = default_start, today
    if start > today:
        linked.append((dates, "The link's dates are after today, and there are no figures yet; the default range "
                              "is shown."))
        start, end = default_start, today
    if end > today + timedelta(days=1):  # a day's grace: a link sent from a zone already in tomorrow
        linked.append((dates, "The link's end date is after today; the range ends today, the last day with figures."))
        end = today
    if start < EARLIEST:
        linked.append((dates, f"Ranges start on {EARLIEST:%Y-%m-%d} or later; the range starts there."))
        start, end = (EARLIEST, end) if end >= EARLIEST else (default_start, today)
    grain = _param("grain") or "month"
    if grain not in GRANULARITIES:
        linked.append((grains, f"“{grain}” is not a granularity (use day, week or month); month is shown."))
        grain = "month"
    if with_granularity and _coarsest_needed(start, end, grain) != grain:
        # Said here, before the radio is drawn, so a link's too-fine granularity shows as the one used.
        shown_by = _coarsest_needed(start, end, grain)
        linked.append((dates | grains, f"{(end - start).days + 1:,} days are too many to show by {grain}; the charts "
                                       f"show them by {shown_by}."))
        grain = shown_by
    currencies = list(options.currency)
    money = (_param("money") or REPORTING).upper()
    money = REPORTING if money == REPORTING.upper() else money
    if money != REPORTING and money not in currencies:
        linked.append((monies, f"“{money}” is not one of the currencies in the data; the reporting currency is shown."))
        money = REPORTING

    # What the address asks for, once corrected: a run whose choices are these leaves the address
    # as it is. Writing the corrected values made a history entry, and Back from a corrected link
    # (a start before 2000, a granularity too fine) led to the same link, corrected again.
    meant: tuple[object, ...] = (start, end, grain, money)
    k = f"{page}_ctl_"
    # The link's values are the widgets' *initial* values (``value=`` / ``index=``); afterwards each
    # widget keeps the person's choice in its own state, until the address changes under the page
    # (Back, Forward): then the address wins. Else the page wrote its widgets' state back over the
    # address it was given, and Back after a change of range or granularity seemed to do nothing.
    # The address's values are set through the session state, which also redraws the widgets in
    # the browser (deleting their state reset them here but left the browser showing the old
    # choice); in that run the widgets get no default of their own (Streamlit warns of both). The
    # date range is the exception: a new key draws it afresh with the address's pair as its value.
    seen = st.session_state.get(k + "address")
    moved = seen is not None and seen != _owned()
    if moved:
        # The date range is drawn afresh under a new key instead: set through the session state,
        # the picker kept showing only the range's start after Back.
        st.session_state[k + "range_gen"] = int(st.session_state.get(k + "range_gen") or 0) + 1
        st.session_state[k + "grain"] = grain
        st.session_state[k + "money"] = money
    cols = st.columns([2.2, 1.6, 1.8] if with_granularity and with_money else [2.2, 1.8, 1.6])
    with cols[0]:
        picked = st.date_input("Date range", value=(start, end), key=f"{k}range{st.session_state.get(k + 'range_gen') or ''}",
                               format="YYYY-MM-DD",
                               min_value=EARLIEST, max_value=max(today, end),
                               help="Local calendar days in the business time zone, both ends included.")
    if isinstance(picked, tuple | list) and len(picked) == 2:
        start, end = picked[0], picked[1]
    elif isinstance(picked, tuple | list) and len(picked) == 1:
        problems.append("Pick an end date too; until then the range ends on the start date.")
        start = end = picked[0]
    i = 1
    if with_granularity:
        with cols[i]:
            grain = st.radio("Granularity", list(GRANULARITIES), index=0 if moved else GRANULARITIES.index(grain),
                             key=k + "grain",
                             horizontal=True, format_func=GRANULARITY_LABELS.__getitem__,
                             help="Size of each bucket on the charts over time.")
        i += 1
    if with_money:
        money_options = [REPORTING, *currencies]
        with cols[i]:
            money = st.selectbox(
                "Money", money_options, index=0 if moved else money_options.index(money), key=k + "money",
                format_func=lambda v: f"Converted to {reporting_currency}" if v == REPORTING else f"{v} only",
                help=("Converted: every amount in the reporting currency at that month's rate. "
                      "A single currency: only amounts charged in it, unconverted."),
            )

    picked_grain = grain
    shown_by = _coarsest_needed(start, end, grain) if with_granularity else grain
    if shown_by != grain:
        problems.append(f"{(end - start).days + 1:,} days are too many to show by {grain}; the charts show them "
                        f"by {shown_by}.")
        grain = shown_by

    chosen: dict[str, tuple[str, ...]] = {}
    active = [f for f in with_filters if getattr(options, f)]
    initial: dict[str, str] = {}
    if active:
        for f in active:
            asked = st.query_params.get_all(f)
            wanted = [v for v in asked if v in getattr(options, f)]
            initial[f] = wanted[0] if wanted else ALL
            if asked and not wanted:
                linked.append((frozenset({f}), f"“{asked[0]}” is not one of the {FILTER_PLURALS[f]} in the data; "
                                               f"all {FILTER_PLURALS[f]} are shown."))
            if moved:
                st.session_state[k + f] = initial[f]
        current = {f: st.session_state.get(k + f, initial[f]) for f in active}
        count = sum(1 for v in current.values() if v not in (None, ALL))
        with st.expander(f"Filters ({count:,} active)" if count else "Filters", expanded=bool(count)):
            fcols = st.columns(len(active))
            for col, f in zip(fcols, active, strict=True):
                choices = [ALL, *getattr(options, f)]
                with col:
                    picked_value = st.selectbox(FILTER_LABELS[f], choices, index=0 if moved else choices.index(initial[f]),
                                                key=k + f,
                                                format_func=functools.partial(_filter_choice, f))
                    chosen[f] = () if picked_value in (None, ALL) else (str(picked_value),)

    linked_filters: dict[str, tuple[str, ...]] = {f: () if v in (None, ALL) else (str(v),) for f, v in initial.items()}
    if (start, end, grain, money) != meant or chosen != linked_filters:
        _write_params({"from": start.isoformat(), "to": end.isoformat(),
                       **({"grain": grain} if with_granularity else {}), **({"money": money} if with_money else {})},
                      {"from": default_start.isoformat(), "to": today.isoformat(), "grain": "month",
                       "money": REPORTING},
                      chosen)
    st.session_state[k + "address"] = _owned()
    changed = {name for name, now, asked in (("range", (start, end), meant[:2]), ("grain", picked_grain, meant[2]),
                                             ("money", money, meant[3])) if now != asked}
    changed |= {f for f in active if chosen.get(f, ()) != linked_filters.get(f, ())}
    said = [sentence for fields, sentence in linked if not fields & changed] + problems
    problems = list(dict.fromkeys(said))  # once each: the link's and the page's can be the same sentence
    for p in problems:
        st.warning(md(p))
    return Controls(start=start, end=end, granularity=grain, money=money,
                    filters={f: v for f, v in chosen.items() if v}, problems=tuple(problems))


OWNED = ("from", "to", "grain", "money", *FILTERS)  # the parameters the controls write

# The bounds of what a page is asked to draw. Without them one link (every day since the year 1)
# held the server at 5 GB for minutes; two years of days or ten of weeks is more than a chart shows.
EARLIEST = date(2000, 1, 1)
MOST_BUCKETS = {"day": 731, "week": 530}


def _coarsest_needed(start: date, end: date, grain: str) -> str:
    """``grain``, or the next longer granularity when the range holds too many buckets of it."""
    days = (end - start).days + 1
    if grain == "day" and days > MOST_BUCKETS["day"]:
        grain = "week"
    if grain == "week" and days / 7 > MOST_BUCKETS["week"]:
        grain = "month"
    return grain


def _owned() -> dict[str, list[str]]:
    return {name: st.query_params.get_all(name) for name in OWNED if name in st.query_params}


def _write_params(values: dict[str, str], defaults: dict[str, str], chosen: dict[str, tuple[str, ...]]) -> None:
    """Put the choices in the address, leaving out each one at its default that the address does
    not already carry. Each write of st.query_params is a message the browser answers with a
    history entry (pushState): a visit from the sidebar that wrote its defaults made a second
    entry after the navigation's own, so Back had to be pressed twice to leave the page."""
    current = {name: st.query_params.get_all(name) for name in st.query_params}
    # Parameters the controls do not own (e.g. a selected drill) stay untouched.
    target = {name: v for name, v in current.items() if name not in OWNED}
    for name, value in values.items():
        if value != defaults[name] or name in current:
            target[name] = [value]
    if "from" in target or "to" in target:  # a range is written whole
        target["from"], target["to"] = [values["from"]], [values["to"]]
    target.update({f: list(v) for f, v in chosen.items() if v})
    if target != current:
        st.query_params.from_dict(target)
