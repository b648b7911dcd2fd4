"""One row in, keyed by its Stripe id: insert, update only what changed, or refuse an older state.

Reads go through the page cache when ``apply_many`` has one (``cache.py``); member version
bumps are counted per page there and written once, and a new row is queued with its id drawn in
advance and written with the page's other new rows (``pending.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from core.models import Base
from core.stripe_store import cache, pending


def db_table(name: str) -> Table:
    return Base.metadata.tables[name]


def stored_row(session: Session, table: str, key: str, value: Any) -> dict[str, Any] | None:
    """The stored row whose ``key`` is ``value`` (from the page cache when ``apply_many`` has it)."""
    hit = cache.cached_row(session, table, key, value)
    if hit is not cache.UNKNOWN:
        return hit  # type: ignore[no-any-return]
    t = db_table(table)
    found = session.execute(select(t).where(t.c[key] == value)).mappings().first()
    return None if found is None else dict(found)


def upsert(session: Session, table: str, key: str, row: dict[str, Any], state_at: datetime | None,
           *, absent: bool = False) -> tuple[str, int | None, dict[str, Any] | None]:
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
    if has_state and state_at and before.get("stripe_state_at") != state_at and (
        changed or before.get("stripe_state_at") is None or before["stripe_state_at"] < state_at
    ):
        changed_state = {"stripe_state_at": state_at}
    else:
        changed_state = {}
    if changed or changed_state:
        session.execute(update(t).where(t.c.id == before["id"]), {**changed, **changed_state})
    return ("updated" if changed else "unchanged"), before["id"], before


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
    if not session.execute(stmt.values(version=m.c.version + 1)).rowcount:
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
    return held[1]  # type: ignore[no-any-return]
