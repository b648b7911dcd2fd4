"""Column types that keep their promises on every database: aware UTC times, encrypted secrets,
statuses read back as their ``StrEnum``."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import DateTime, String, Text
from sqlalchemy.types import TypeDecorator

from core import crypto


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware UTC; refuses naive values; re-attaches UTC on read (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store timezone-aware UTC times")
        value = value.astimezone(UTC)
        # SQLite compares stored text, so always store the same naive-UTC spelling there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class StrEnumString(TypeDecorator[E]):
    """A status stored as the plain string (a ``VARCHAR(length)``, no database enum, no check), read
    back as its ``StrEnum`` member. Stripe adds values over time: one we do not know yet is stored
    as sent and reads back as the plain string, which compares equal to a member the same way."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum
        self._members = {m.value: m for m in enum}

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Any) -> E | None:
        if value is None:
            return None
        # An unknown value stays the plain string it was stored as (see the docstring).
        return self._members.get(value, value)  # type: ignore[return-value]  # Stripe may add values


class EncryptedText(TypeDecorator[str]):
    """Text encrypted with the active key ring (see ``core.crypto``); never stored in clear."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return crypto.keyring().encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return crypto.keyring().decrypt(value)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON document encrypted as a whole (audit before/after, raw Stripe payloads)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        import json

        return crypto.keyring().encrypt(json.dumps(value, default=str, sort_keys=True))

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        if value is None:
            return None
        import json

        return json.loads(crypto.keyring().decrypt(value))
