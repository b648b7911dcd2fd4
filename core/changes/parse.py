"""Turn what a person typed into clean values, or refuse with one sentence (``ChangeRefused``).

Every parser accepts the raw form value (str, int, None...) and never raises anything else, so
random input can never produce a traceback.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

from core.changes.errors import ChangeRefused
from core.money import SUPPORTED_CURRENCIES, MoneyError, normalise_currency, parse_major

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[A-Za-z]{2,63}$")
PHONE = re.compile(r"^\+?[0-9 ()./-]{5,30}$")


def text(value: Any, what: str, *, required: bool = True, max_len: int = 2000) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str | int | float):
        raise ChangeRefused(f"The {what} must be text.")
    cleaned = str(value).strip()
    if "\x00" in cleaned:
        raise ChangeRefused(f"The {what} contains a character that cannot be stored.")
    if required and not cleaned:
        raise ChangeRefused(f"Please write the {what}.")
    if len(cleaned) > max_len:
        raise ChangeRefused(f"The {what} is too long (at most {max_len} characters).")
    return cleaned


def whole_number(value: Any, what: str, *, low: int = 1, high: int = 10_000) -> int:
    if isinstance(value, bool):
        raise ChangeRefused(f"The {what} must be a whole number.")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer() or isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,9}\s*", value):
        number = int(value)
    else:
        raise ChangeRefused(f"The {what} must be a whole number.")
    if number < low:
        raise ChangeRefused(f"The {what} must be at least {low}.")
    if number > high:
        raise ChangeRefused(f"The {what} must be at most {high}.")
    return number


def currency(value: Any) -> str:
    try:
        code = normalise_currency(str(value or ""))
    except MoneyError as exc:
        raise ChangeRefused(str(exc)) from None
    if code not in SUPPORTED_CURRENCIES:
        raise ChangeRefused(f"{code} is not a currency we sell in ({', '.join(SUPPORTED_CURRENCIES)}).")
    return code


def amount(value: Any, currency_code: str, what: str = "amount") -> int:
    """A positive amount in minor units; ``value`` is typed major units ("12.50") or an int of minor units."""
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise ChangeRefused(f"Please enter the {what}.")
    if isinstance(value, int):
        minor = value
    elif isinstance(value, str | float):
        try:
            minor = parse_major(str(value), currency_code)
        except MoneyError as exc:
            raise ChangeRefused(str(exc)) from None
        except Exception:  # noqa: BLE001 - any other oddity is still just bad input
            raise ChangeRefused(f"“{value}” is not an amount.") from None
    else:
        raise ChangeRefused(f"“{value}” is not an amount.")
    if minor <= 0:
        raise ChangeRefused(f"The {what} must be more than zero.")
    if minor > 10**12:
        raise ChangeRefused(f"The {what} is too large.")
    return minor


def moment(value: Any, what: str) -> datetime:
    """A date or datetime; a date means midnight UTC at its start."""
    try:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ChangeRefused(f"The {what} needs a time zone.")
            return value.astimezone(UTC)
        if isinstance(value, date):
            return datetime.combine(value, time(0), tzinfo=UTC)
        if isinstance(value, str):
            raw = value.strip()
            try:
                parsed = datetime.fromisoformat(raw)
            except ValueError:
                raise ChangeRefused(f"“{raw}” is not a date (use YYYY-MM-DD).") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past the last datetime Python has, in UTC
        raise ChangeRefused(f"The {what} is too far in the past or the future.") from None
    raise ChangeRefused(f"The {what} must be a date.")


def future(value: Any, what: str, now: datetime) -> datetime:
    when = moment(value, what)
    if when <= now:
        raise ChangeRefused(f"The {what} is in the past; choose a later date.")
    if when.year > now.year + 5:
        raise ChangeRefused(f"The {what} is too far in the future.")
    return when


def choice(value: Any, allowed: tuple[str, ...] | list[str], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ChangeRefused(f"Choose the {what} from the list.")
    return value


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (None, "", 0, "0", "false", "False", "no"):
        return False
    if value in (1, "1", "true", "True", "yes"):
        return True
    raise ChangeRefused("A yes/no field has an unexpected value.")


def email(value: Any) -> str:
    cleaned = text(value, "email address", max_len=320).lower()
    if not EMAIL.match(cleaned):
        raise ChangeRefused(f"“{cleaned}” is not an email address.")
    return cleaned


def phone(value: Any) -> str | None:
    cleaned = text(value, "phone number", required=False, max_len=40)
    if not cleaned:
        return None
    if not PHONE.match(cleaned):
        raise ChangeRefused(f"“{cleaned}” is not a phone number (digits, spaces and + only).")
    return cleaned
