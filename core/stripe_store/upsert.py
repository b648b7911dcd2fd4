"""One row in, keyed by its Stripe id: insert, update only what changed, or refuse an older state.

Reads go through the page cache when ``apply_many`` has one (``cache.py``); member version
bumps are counted per page there and written once, and a new row is queued with its id drawn in
advance and written with the page's other new rows (``pending.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, or_, select, update
from sqlalchemy.orm import Session

from core.db import affected_rows
from core.db.types import EncryptedJSON, EncryptedText
from core.models import Base
from core.stripe_store import cache, pending

_OPAQUE = (EncryptedJSON, EncryptedText)  # stored encrypted: equal values differ in SQL


def db_table(name: str) -> Table:
    return Base.metadata.tables[name]


def stored_row(session: Session, table: str, key: str, value: Any) -> dict[str, Any] | None:
    """The stored row whose ``key`` is ``value`` (from the page cache when ``apply_many`` has it)."""
    hit = cache.cached_row(session, table, key, value)
    if hit is not cache.UNKNOWN:
        return hit
    t = db_table(table)
    found = session.execute(select(t).where(t.c[key] == value)).mappings().first()
    return None if found is None else dict(found)


def upsert(session: Session, table: str, key: str, row: dict[str, Any], state_at: datetime | None,
           *, absent: bool = False) -> tuple[str, int, dict[str, Any] | None]:
    """Insert or update one row keyed by ``row[key]``: (outcome, id, the row before). ``absent``:
    the caller knows no such row exists (a child of a row created just now)."""
    t = db_table(table)
    has_state = "stripe_state_at" in t.c
    existing = None if absent else stored_row(session, table, key, row[key])
    names = pending.column_names(table)
    cols = {k: v for k, v in row.items() if k in names}
    if existing is None:
        if has_state:
            cols["stripe_state_at"] = state_at
        new_id = pending.insert_one(session, table, cols)
        cache.forget_row(session, table, key, row[key])
        cache.remember_id(session, table, key, row[key], new_id)
        return "created", new_id, None
    cache.forget_row(session, table, key, row[key])
    before = dict(existing)
    if has_state and before.get("stripe_state_at") and state_at and before["stripe_state_at"] > state_at:
        return "stale", before["id"], before
    changed = {k: v for k, v in cols.items() if before.get(k) != v}
    if changed and _write_if_still_different(session, t, before["id"], changed, state_at if has_state else None):
        return "updated", before["id"], before
    if has_state and state_at and (before.get("stripe_state_at") is None or before["stripe_state_at"] < state_at):
        # Same content, newer state: only the time moves (never back, if another writer was faster).
        state = t.c.stripe_state_at
        session.execute(update(t).where(t.c.id == before["id"], or_(state.is_(None), state < state_at))
                        .values(stripe_state_at=state_at))
    return "unchanged", before["id"], before


def _write_if_still_different(session: Session, t: Table, row_id: int, changed: dict[str, Any],
                              state_at: datetime | None) -> bool:
    """Write ``changed`` unless the row holds it already; True when it did not.

    The row was read before this write, and another transaction may have written the same content
    since: a staff change's mirror and the webhook echoing it, or two deliveries of one event.
    Compared again in the ``UPDATE`` itself (PostgreSQL re-checks the condition on the row as it
    is once its lock is free; SQLite has one writer at a time), so an echo finds its content
    stored and is "unchanged": no member version step for what the staff member already saw.
    Encrypted columns cannot be compared in SQL: a change to one of them is always written."""
    values = dict(changed) | ({"stripe_state_at": state_at} if state_at is not None else {})
    stmt = update(t).where(t.c.id == row_id).values(**values)
    if not any(isinstance(t.c[k].type, _OPAQUE) for k in changed):
        stmt = stmt.where(or_(*(t.c[k].is_distinct_from(v) for k, v in changed.items())))
    return bool(affected_rows(session.execute(stmt)))


def bump_version(session: Session, member_id: int | None, *, expected: int | None = None) -> bool:
    """Raise the member's ``version`` (the one place it is raised): a staff form opened before this
    transaction's change is refused. Once per member and transaction, however many of its rows the
    transaction writes, so a reader sees each committed change as one step.

    ``expected``: raise it only from that version (the claim of a staff change,
    ``UPDATE ... WHERE version = expected``); False when the member is at another version."""
    if member_id is None:
        return False
    bumped = _bumped_in_transaction(session)
    if expected is None and member_id in bumped:
        return True
    page = cache.current(session)
    if page is not None and expected is None:
        page.bumps[member_id] += 1  # written once per member at the end of the page
        bumped.add(member_id)
        return True
    m = db_table("members")
    stmt = update(m).where(m.c.id == member_id)
    if expected is not None:
        stmt = stmt.where(m.c.version == expected)
    if not affected_rows(session.execute(stmt.values(version=m.c.version + 1))):
        return False
    bumped.add(member_id)
    return True


_BUMPED = "memberdesk_versions_bumped"


def _bumped_in_transaction(session: Session) -> set[int]:
    """The members whose version this session's current transaction has raised already."""
    session.connection()  # begins the transaction if none has begun, so it can be told apart
    tx = session.get_transaction()
    held = session.info.get(_BUMPED)
    if held is None or held[0] is not tx:
        held = session.info[_BUMPED] = (tx, set())
    return held[1]
