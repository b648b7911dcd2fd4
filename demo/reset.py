"""``--replace``: empty the member and Stripe-mirror tables in one transaction.

The audit log is append-only (database triggers refuse deletes) and is never touched; staff
accounts, settings, FX rates and the catalogue stay. Any table with a foreign key into a cleared
table is cleared too (children first), so tables added later by other areas cannot block it.
"""

from __future__ import annotations

from sqlalchemy import Engine, Table, delete

from core.models import Base

ROOTS = ("members", "subscriptions", "payments", "invoices", "payment_methods", "stripe_events", "sync_state")
NEVER = frozenset({"audit_log", "staff_accounts", "login_attempts", "tiers", "prices"})


def tables_to_clear() -> list[Table]:
    """The tables ``clear_demo_tables`` empties, children before parents."""
    chosen = {name for name in ROOTS if name in Base.metadata.tables}
    grew = True
    while grew:
        grew = False
        for table in Base.metadata.sorted_tables:
            if table.name in chosen or table.name in NEVER:
                continue
            if any(fk.column.table.name in chosen for fk in table.foreign_keys):
                chosen.add(table.name)
                grew = True
    return [t for t in reversed(Base.metadata.sorted_tables) if t.name in chosen]


def clear_demo_tables(engine: Engine) -> dict[str, int]:
    """Delete every row of the member and Stripe-mirror tables (one transaction)."""
    counts = {}
    with engine.begin() as conn:
        for table in tables_to_clear():
            counts[table.name] = conn.execute(delete(table)).rowcount
    return counts
