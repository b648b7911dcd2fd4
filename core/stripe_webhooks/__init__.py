"""Stripe webhooks: the push path beside the pull sync.

``receive`` verifies a delivery and records it in the sync's event ledger (one row per event id,
so a duplicate or an event the pull sync already fetched is recorded once); ``apply_loop`` handles
recorded events in the background through the same ``process_pending`` path as the pull sync;
``routes`` serves ``POST /stripe/webhook`` and ``GET /healthz`` beside the dashboard.
"""
