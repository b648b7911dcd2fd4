"""The dashboard's one engine and its settings.

``engine()`` is cached per process (``st.cache_resource``) and comes from ``load_settings()`` and
``core.db.connect``, which also installs the encryption key ring. A bad setting stops the page
with the sentence from ``SettingsError`` instead of a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import streamlit as st
from sqlalchemy import Engine

from core.crypto import EncryptionKeyError
from core.db import connect
from core.settings import Settings, SettingsError, load_settings, read_secrets_file
from dashboard.text import md

if TYPE_CHECKING:
    from stripe import StripeClient


def _secrets() -> dict[str, Any]:
    """Streamlit's secrets (``.streamlit/secrets.toml`` or ``--secrets.files``), else the file."""
    try:
        data = st.secrets.to_dict()
    except Exception:  # no secrets file at all: Streamlit raises; fall back to our own reader
        data = {}
    return data or read_secrets_file()


def settings() -> Settings:
    """The deployment settings: environment first, then the secrets. Read on each call (cheap), so
    a changed secrets file or test secrets apply without a restart."""
    try:
        return load_settings(secrets=_secrets())
    except SettingsError as exc:
        st.error(md(exc))
        st.stop()
        raise  # unreachable: st.stop() raises


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    return connect(settings())


def engine() -> Engine:
    """The SQLAlchemy engine for the configured database (one per process)."""
    s = settings()
    try:
        eng = _engine(s.database_url)
        # connect() installs the key ring; re-install it even when the engine came from the cache,
        # so encrypted columns always read with this deployment's keys.
        connect(s)
    except EncryptionKeyError as exc:
        st.error(md(exc))
        st.stop()
        raise  # st.stop() raises inside a running app; outside one, keep the error
    return eng


@st.cache_resource(show_spinner=False)
def _stripe_client(api_key: str, api_base: str) -> StripeClient:
    from core.stripe_gateway import make_client

    return make_client(api_key, api_base=api_base)


def stripe_client() -> StripeClient | None:
    """The injected Stripe client (one per process and key), or None when no key is configured:
    Stripe actions then refuse with a sentence."""
    s = settings()
    if not s.stripe_api_key:
        return None
    try:
        return _stripe_client(s.stripe_api_key, s.stripe_api_base)
    except SettingsError:
        return None
