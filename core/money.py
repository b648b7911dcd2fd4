"""Money: integer minor units beside an ISO 4217 currency code.

Amounts never become floats until a chart draws them. Zero-decimal currencies (JPY, KRW, ...)
have no minor unit: 1200 JPY is stored as 1200, not 120000. The list follows Stripe's
"zero-decimal currencies" page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import NewType

# An amount in a currency's minor units (cents; yen for JPY): the type amounts carry between
# modules, so a float or a major-unit number cannot be passed where minor units are meant.
MinorUnits = NewType("MinorUnits", int)

ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
     "XAF", "XOF", "XPF"}
)
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$", "AUD": "A$"}
SUPPORTED_CURRENCIES = ("USD", "EUR", "GBP", "JPY")


class MoneyError(ValueError):
    """An amount or currency a person typed that we cannot accept; the message is a sentence."""


def normalise_currency(code: str) -> str:
    code = (code or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise MoneyError(f"“{code}” is not a currency code; use three letters such as USD or JPY.")
    return code


def decimals(currency: str) -> int:
    return 0 if normalise_currency(currency) in ZERO_DECIMAL else 2


def to_major(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-decimals(currency))


# Plain amounts only: ASCII digits, optional thousands commas, an optional decimal point. Python's
# Decimal would also take "1e3", full-width "１２", "1_000" and "  Infinity": none of them is how a
# person writes money, and "1e3" silently meant 1,000.00.
_PLAIN_AMOUNT = re.compile(r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]*)?|-?\.[0-9]+")


def parse_major(text: str | int | float | Decimal, currency: str) -> MinorUnits:
    """Turn what a person typed ("12.50", "1,200", "$5") into minor units, refusing extra decimals
    and anything but plain digits (no exponents, no full-width digits, no underscores)."""
    currency = normalise_currency(currency)
    raw = str(text).strip()
    own = SYMBOLS.get(currency, "")
    # The amount's own symbol is dropped ("$" also for another dollar); another currency's is
    # refused: "€5" for a USD payment was read as $5.00.
    for symbol in sorted(SYMBOLS.values(), key=len, reverse=True):
        if raw.startswith(symbol):
            if symbol != own and not (symbol == "$" and own.endswith("$")):
                raise MoneyError(f"“{text}” is written in another currency; this amount is in {currency}.")
            raw = raw[len(symbol):]
            break
    raw = raw.strip()
    if not _PLAIN_AMOUNT.fullmatch(raw):
        raise MoneyError(f"“{text}” is not an amount: write plain digits with an optional decimal point, "
                         "such as 12.50 or 1,200.")
    try:
        value = Decimal(raw.replace(",", ""))
    except InvalidOperation:
        raise MoneyError(f"“{text}” is not an amount.") from None
    places = decimals(currency)
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        unit = "whole units" if places == 0 else f"{places} decimal places"
        raise MoneyError(f"{currency} amounts take {unit}; “{text}” has more.")
    return MinorUnits(int(minor))


def format_money(amount_minor: int | None, currency: str, *, signed: bool = False) -> str:
    """Format for people: ``$1,234.50``, ``¥1,200``, ``-€3.00``; None is an em dash."""
    if amount_minor is None:
        return "—"
    currency = normalise_currency(currency)
    places = decimals(currency)
    value = to_major(abs(int(amount_minor)), currency)
    number = f"{value:,.{places}f}"
    symbol = SYMBOLS.get(currency)
    body = f"{symbol}{number}" if symbol else f"{number} {currency}"
    if amount_minor < 0:
        return f"-{body}"
    return f"+{body}" if signed and amount_minor > 0 else body


def convert(amount_minor: int, from_currency: str, to_currency: str, usd_per_from: Decimal,
            usd_per_to: Decimal) -> MinorUnits:
    """Convert minor units through USD rates (value in USD of one major unit of each currency).

    Rounds half to even once, at the end, so summing converted amounts stays within one minor unit
    per row of converting the sum.
    """
    return MinorUnits(converter(from_currency, to_currency, usd_per_from, usd_per_to)(amount_minor))


def converter(from_currency: str, to_currency: str, usd_per_from: Decimal,
              usd_per_to: Decimal) -> Callable[[int], int]:
    """``convert`` for one pair of currencies and rates, with the checks done once (a report
    converts thousands of subtotals at a few dozen rates)."""
    if normalise_currency(from_currency) == normalise_currency(to_currency):
        return int
    places_from, places_to = decimals(from_currency), decimals(to_currency)
    usd_from, usd_to = Decimal(usd_per_from), Decimal(usd_per_to)

    def run(amount_minor: int) -> int:
        major = Decimal(int(amount_minor)).scaleb(-places_from) * usd_from / usd_to
        return int(major.scaleb(places_to).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))

    return run


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", normalise_currency(self.currency))
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise MoneyError("Money amounts are whole minor units.")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"Cannot add {other.currency} to {self.currency} without converting.")

    def __str__(self) -> str:
        return format_money(self.amount, self.currency)
