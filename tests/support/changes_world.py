"""A small Stripe world for the membership-change tests: built in the sandbox through the real
client, then mirrored into our database through the shared store (as the sync would)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, select

from core import stripe_store
from core.db import session_scope
from core.models import Member, Payment, Price
from core.stripe_gateway import ClientOptions, make_client
from core.timeutil import utc_now
from tests.support.sandbox import SandboxProcess


@dataclass
class Stripe:
    """The shared sandbox process (``tests.support.sandbox``) seen through our own gateway."""

    proc: SandboxProcess
    client: Any  # retries like production
    bare: Any  # no network retries: lets a test see a fault once

    def fault(self, **spec: Any) -> None:
        self.proc.fault(**spec)

    def server_settings(self) -> dict[str, str]:
        """The ``[stripe]`` secrets of a dashboard server whose Stripe is this sandbox."""
        return {"api_key": self.proc.api_key, "api_base": self.proc.url}


@pytest.fixture
def stripe_env(sandbox: SandboxProcess) -> Iterator[Stripe]:
    yield Stripe(sandbox,
                 make_client(sandbox.api_key, api_base=sandbox.url, options=ClientOptions(read_timeout=10)),
                 make_client(sandbox.api_key, api_base=sandbox.url,
                             options=ClientOptions(read_timeout=3, max_network_retries=0)))


def d(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


@dataclass
class World:
    member_id: int
    customer: str
    subscription: str
    prices: dict[str, int]  # name -> our price id
    stripe_prices: dict[str, str]
    payment_id: int
    charge: str


def mirror(engine: Engine, client: Any, customer: str) -> None:
    """Pull one customer's objects into our database, parents first (what a sync does)."""
    objs: list[dict[str, Any]] = []
    for prod in client.v1.products.list({"limit": 100}).auto_paging_iter():
        objs.append(d(prod))
    for price in client.v1.prices.list({"limit": 100}).auto_paging_iter():
        objs.append(d(price))
    objs.append(d(client.v1.customers.retrieve(customer)))
    objs += [d(pm) for pm in client.v1.customers.payment_methods.list(customer).auto_paging_iter()]
    objs += [d(s) for s in client.v1.subscriptions.list({"customer": customer, "status": "all"}).auto_paging_iter()]
    objs += [d(c) for c in client.v1.charges.list({"customer": customer}).auto_paging_iter()]
    objs += [d(i) for i in client.v1.invoices.list({"customer": customer}).auto_paging_iter()]
    with session_scope(engine) as s:
        for obj in objs:
            stripe_store.apply(s, obj, state_at=utc_now())


def build(engine: Engine, client: Any, *, card: str = "pm_card_visa", currency: str = "usd",
          email: str = "ann@example.com", trial_days: int | None = None) -> World:
    premium = client.v1.products.create({"name": "Premium", "metadata": {"tier": "premium"}})
    platinum = client.v1.products.create({"name": "Platinum", "metadata": {"tier": "platinum"}})
    stripe_prices = {
        "premium_monthly": client.v1.prices.create({"product": premium.id, "currency": currency, "unit_amount": 1000,
                                                    "recurring": {"interval": "month"}}).id,
        "platinum_monthly": client.v1.prices.create({"product": platinum.id, "currency": currency,
                                                     "unit_amount": 3000, "recurring": {"interval": "month"}}).id,
        "premium_eur": client.v1.prices.create({"product": premium.id, "currency": "eur", "unit_amount": 900,
                                                "recurring": {"interval": "month"}}).id,
        "premium_yearly": client.v1.prices.create({"product": premium.id, "currency": currency, "unit_amount": 10000,
                                                   "recurring": {"interval": "year"}}).id,
    }
    cus = client.v1.customers.create({"email": email, "name": "Ann Lee", "payment_method": card,
                                      "invoice_settings": {"default_payment_method": card}})
    params: dict[str, Any] = {"customer": cus.id, "items": [{"price": stripe_prices["premium_monthly"]}]}
    if trial_days:
        params["trial_period_days"] = trial_days
    sub = client.v1.subscriptions.create(params)
    mirror(engine, client, cus.id)
    with session_scope(engine) as s:
        member = s.scalar(select(Member).where(Member.stripe_customer_id == cus.id))
        prices = {name: s.scalar(select(Price.id).where(Price.stripe_price_id == sid))
                  for name, sid in stripe_prices.items()}
        payment = s.scalar(select(Payment).where(Payment.member_id == member.id))
        return World(member.id, cus.id, sub.id, prices, stripe_prices, payment.id if payment else 0,
                     payment.stripe_charge_id if payment else "")


def version(engine: Engine, member_id: int) -> int:
    with session_scope(engine) as s:
        return s.get(Member, member_id).version
