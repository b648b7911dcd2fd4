"""One page's questions answered once: inside ``shared()``, a value asked for again under the
same key (an aggregate query, the rate table, the rollups' state) is reused instead of read again.
Outside the block nothing is kept, so a later call always sees the database as it is then."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
_memo: ContextVar[dict[Hashable, Any] | None] = ContextVar("metrics_memo", default=None)


@contextlib.contextmanager
def shared() -> Iterator[None]:
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def memoised(key: Hashable, fn: Callable[[], T]) -> T:
    """``fn()``, or the value it gave for ``key`` earlier in this block. A DataFrame is handed out
    as a copy (callers add columns); other values must not be changed by callers."""
    memo = _memo.get()
    if memo is None:
        return fn()
    if key not in memo:
        memo[key] = fn()
    value: T = memo[key]
    pd = sys.modules.get("pandas")  # not imported: nothing here is a DataFrame (the CLI never imports it)
    return value.copy() if pd is not None and isinstance(value, pd.DataFrame) else value


MISSING: Any = object()


def held(key: Hashable) -> Any:
    """The value kept for ``key`` in this block, or ``MISSING`` (nothing is computed)."""
    memo = _memo.get()
    return MISSING if memo is None else memo.get(key, MISSING)


def forget(key: Hashable) -> None:
    memo = _memo.get()
    if memo is not None:
        memo.pop(key, None)
