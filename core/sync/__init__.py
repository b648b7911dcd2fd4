"""The Stripe sync: backfill, incremental events, the ledger, locks, freshness, reconciliation.

Guarantees (each tested against the local sandbox over HTTP with the real client):
- the same event twice changes nothing (ledger: one row per event id, handled at most once);
- an older state never overwrites a newer one (the store compares ``state_at``);
- a failing handler leaves its event unprocessed with the error stored; the next run retries it;
- a rate limit or outage mid-run is a failed run, never a successful one, and the next run resumes
  without loss (cursors move only past committed work);
- two runs at once never both write (``locks``); the second records a ``skipped`` run;
- events rendered in an older API version are mapped by the same mapping layer.

Entry points: ``run_sync``, ``resync_member``, ``reconcile_totals``, ``reconcile_member``, ``status``.
"""

from core.sync.locks import LockBusy
from core.sync.reconcile import (
    MemberDiff,
    ReconRow,
    parse_month,
    reconcile_member,
    reconcile_totals,
    resync_member,
)
from core.sync.run import RunResult, refresh_rollups, run_sync
from core.sync.status import RunSummary, SyncStatus, TypeFreshness, status

__all__ = [
    "LockBusy",
    "MemberDiff",
    "ReconRow",
    "RunResult",
    "RunSummary",
    "SyncStatus",
    "TypeFreshness",
    "parse_month",
    "reconcile_member",
    "reconcile_totals",
    "refresh_rollups",
    "resync_member",
    "run_sync",
    "status",
]
