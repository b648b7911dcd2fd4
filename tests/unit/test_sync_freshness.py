"""The one line that says how fresh the Stripe data is (Overview, admin and sync pages)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.sync.staff_actions import data_through_sentence
from core.sync.status import SyncStatus


def test_the_freshness_line_names_webhooks_before_the_first_sync():
    # A demo world loaded directly, its webhooks live, read "Stripe data has not been synced yet." alone.
    now = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    never = SyncStatus(None, None, None, [], [], None, None)
    assert data_through_sentence(never, now) == "Stripe data has not been synced yet."
    live = SyncStatus(None, None, None, [], [], datetime(2026, 12, 7, 13, 55, tzinfo=UTC), "evt_1")
    assert data_through_sentence(live, now) == ("No sync from Stripe has run yet; its webhooks have delivered "
                                                "changes up to 2026-12-07 13:55 UTC. Sync now reads everything once.")
