"""The one place a ``stripe.StripeClient`` is built.

Guarantees:
- the client is built from ``core.settings.Settings`` (``STRIPE_API_KEY``, ``STRIPE_API_BASE``),
  never from the module-global ``stripe.api_key``; callers receive it and pass it on (injection),
  so tests point it at the local sandbox and production at Stripe with the same code;
- every request is pinned to the API version of the installed library (``stripe.api_version``),
  so the shapes we read are the shapes in ``stripe/_*.py``;
- requests have connect/read timeouts and a bounded number of network retries (the library
  retries connection errors, 409 and 5xx with backoff, and honours ``Stripe-Should-Retry``);
- one keep-alive HTTP session per client, so a backfill of thousands of pages does not open
  thousands of connections.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import requests
import stripe

from core.settings import Settings, SettingsError

if TYPE_CHECKING:
    from stripe._base_address import BaseAddresses  # the client's own type, not re-exported

# The library logs every request and response (with its query string) at INFO; our own log lines
# say what the sync did, so keep the library to warnings unless someone asks for more.
logging.getLogger("stripe").setLevel(logging.WARNING)

#: The client type, re-exported so callers can annotate without importing stripe themselves.
StripeClient = stripe.StripeClient

#: API version every request carries: the one the installed library was generated for.
API_VERSION: str = stripe.api_version

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_NETWORK_RETRIES = 2


@dataclass(frozen=True)
class ClientOptions:
    """How patient a client is: timeouts in seconds and retries per request."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_network_retries: int = DEFAULT_NETWORK_RETRIES


def build_client(
    settings: Settings,
    *,
    options: ClientOptions | None = None,
) -> stripe.StripeClient:
    """Return a ``StripeClient`` for these settings; ``SettingsError`` when no key is set."""
    return make_client(
        settings.stripe_api_key,
        api_base=settings.stripe_api_base,
        options=options,
    )


def make_client(
    api_key: str,
    *,
    api_base: str = "",
    options: ClientOptions | None = None,
) -> stripe.StripeClient:
    """Build a client from explicit values (tests and the sandbox loader use this)."""
    if not api_key:
        raise SettingsError(
            "No Stripe API key is configured: set STRIPE_API_KEY or api_key under [stripe] in "
            ".streamlit/secrets.toml (any sk_test_... value works against the local sandbox)."
        )
    opts = options or ClientOptions()
    http_client = stripe.RequestsClient(
        timeout=(opts.connect_timeout, opts.read_timeout),
        session=requests.Session(),
    )
    base_addresses: BaseAddresses = {}
    if api_base:
        # The sandbox serves every surface (api, files, connect) from the same address.
        base_addresses = {"api": api_base, "files": api_base, "connect": api_base}
    return stripe.StripeClient(
        api_key,
        stripe_version=API_VERSION,
        base_addresses=base_addresses,
        max_network_retries=opts.max_network_retries,
        http_client=http_client,
    )
