"""Stripe resources the sandbox speaks; each module registers its routes on the Api."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stripe_sandbox.api import Api


def register_all(api: Api) -> None:
    from stripe_sandbox.resources import catalog, clocks, events, invoices, payments, subscriptions

    for module in (catalog, payments, subscriptions, invoices, clocks, events):
        module.register(api)
