"""transfers between groups in the MRR movement rollups; every rollup rebuilt

A member who moves between tiers, intervals or countries within a period is now a transfer out of
the group they leave and a transfer in to the group they enter (``metrics_mrr_periods``: MRR and
members of each side), so ``MRR end = MRR start + movements`` holds in every group. Payments are
now filed under the price on their invoice line and the member's country then (not their
subscription's current price), so the cash, payment and decline rollups change too. The existing
rows were written under the old rules: the rollups are marked stale, and the next refresh
rebuilds them (until then questions are answered from the raw rows).

Revision ID: 0016
Revises: 0012
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from core.db.types import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "metrics_mrr_periods"
COLUMNS = ("transfer_in", "transfer_out", "members_transferred_in", "members_transferred_out")


def _mark_stale() -> None:
    state = sa.table("metrics_rollup_state", sa.column("key", sa.String), sa.column("value", sa.JSON),
                     sa.column("updated_at", UTCDateTime()))
    bind = op.get_bind()
    bind.execute(sa.delete(state).where(state.c.key == "stale"))
    bind.execute(sa.insert(state).values(key="stale", value=True, updated_at=datetime.now(UTC)))


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    _mark_stale()


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        for name in COLUMNS:
            batch.drop_column(name)
    _mark_stale()
