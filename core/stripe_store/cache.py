"""A page-scoped read cache for ``apply_many``: what the store would otherwise read row by row.

While ``apply_many`` applies one page it keeps a ``PageCache`` in ``session.info``; the store's
lookups consult it first and fall back to a query on a miss, so without a cache (``apply``) every
lookup is a query exactly as before. What it holds, and why it stays true for the whole page:

- ``ids``: (table, Stripe id column) -> {Stripe id: our id} for parents. Our ids never change and a
  row is never deleted while a page is applied, so a hit is always right; a miss is queried.
- ``rows``: the page's own rows prefetched by Stripe id (``None``: known absent). An entry is
  dropped as soon as the store writes that row (or links a row to that id), so a later lookup
  reads the database again.
- ``bumps``: member ids whose ``version`` is to be raised, counted and written once at the end of
  the page (nothing in the store reads ``version``, so deferring the increment is invisible).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from sqlalchemy.orm import Session

KEY = "memberdesk_page_cache"


@dataclass
class PageCache:
    ids: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    rows: dict[tuple[str, str], dict[str, dict[str, Any] | None]] = field(default_factory=dict)
    bumps: Counter[int] = field(default_factory=Counter)


def current(session: Session) -> PageCache | None:
    return session.info.get(KEY)


def cached_id(session: Session, table: str, key: str, sid: str) -> int | None:
    cache = current(session)
    return None if cache is None else cache.ids.get((table, key), {}).get(sid)


def remember_id(session: Session, table: str, key: str, sid: str, our_id: int) -> None:
    cache = current(session)
    if cache is not None:
        cache.ids.setdefault((table, key), {})[sid] = our_id


class _Unknown(Enum):
    UNKNOWN = "unknown"


_UNKNOWN = _Unknown.UNKNOWN


def cached_row(session: Session, table: str, key: str,
               sid: Any) -> dict[str, Any] | None | Literal[_Unknown.UNKNOWN]:
    """The prefetched row (a dict), ``None`` if known absent, or ``UNKNOWN`` (query it)."""
    cache = current(session)
    if cache is None:
        return _UNKNOWN
    return cache.rows.get((table, key), {}).get(sid, _UNKNOWN)


def forget_row(session: Session, table: str, key: str, sid: Any) -> None:
    cache = current(session)
    if cache is not None:
        cache.rows.get((table, key), {}).pop(sid, None)


UNKNOWN = _UNKNOWN
