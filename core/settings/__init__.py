"""Deployment settings: environment variables first, then ``.streamlit/secrets.toml``.

Secrets never live in git: ``.streamlit/secrets.toml`` is ignored and
``.streamlit/secrets.toml.example`` documents every key. A bad setting stops the program at start
with one sentence (``SettingsError``), never a traceback and never a silent default for a secret.

Business settings that staff change at run time (time zone, reporting currency, grace days...)
live in the database instead: see ``core.settings.business``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SECRETS_FILE = ROOT / ".streamlit" / "secrets.toml"
DEFAULT_DATA_DIR = ROOT / "data"
DEFAULT_DATABASE_URL = f"sqlite:///{DEFAULT_DATA_DIR / 'memberdesk.db'}"
DEFAULT_SANDBOX_PORT = 12111


class SettingsError(RuntimeError):
    """A setting is missing or malformed; str(error) is the sentence to show."""


class Source(NamedTuple):
    """Where one setting is read: the environment variable first, else ``[section] key`` in
    .streamlit/secrets.toml."""

    env: str
    section: str
    key: str


_SOURCES: dict[str, Source] = {
    "database_url": Source(env="DATABASE_URL", section="memberdesk", key="database_url"),
    "encryption_keys": Source(env="MEMBERDESK_ENCRYPTION_KEYS", section="memberdesk", key="encryption_keys"),
    "stripe_api_key": Source(env="STRIPE_API_KEY", section="stripe", key="api_key"),
    "stripe_api_base": Source(env="STRIPE_API_BASE", section="stripe", key="api_base"),
    "stripe_webhook_secret": Source(env="STRIPE_WEBHOOK_SECRET", section="stripe", key="webhook_secret"),
    "cookie_key": Source(env="MEMBERDESK_COOKIE_KEY", section="authenticator", key="cookie_key"),
    "cookie_name": Source(env="MEMBERDESK_COOKIE_NAME", section="authenticator", key="cookie_name"),
    "session_idle_minutes": Source(env="MEMBERDESK_SESSION_IDLE_MINUTES", section="authenticator",
                                   key="session_idle_minutes"),
    "smtp_url": Source(env="MEMBERDESK_SMTP_URL", section="notifications", key="smtp_url"),
    "alert_webhook_local_receiver": Source(env="MEMBERDESK_ALERT_WEBHOOK_LOCAL_RECEIVER", section="notifications",
                                           key="webhook_local_receiver"),
}


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    encryption_keys: tuple[str, ...] = ()
    stripe_api_key: str = ""
    stripe_api_base: str = ""  # empty: Stripe's own API
    stripe_webhook_secret: str = ""
    cookie_key: str = ""
    cookie_name: str = "memberdesk_auth"
    session_idle_minutes: int = 30
    smtp_url: str = ""
    # Development and tests only: the one local receiver (scheme://host:port) alert webhooks may
    # reach besides public https servers. Empty (the default): none.
    alert_webhook_local_receiver: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def uses_sandbox(self) -> bool:
        # The host itself, not a prefix: http://localhost.example.com is somebody else's server.
        parts = urlsplit(self.stripe_api_base)
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")

    def require_cookie_key(self) -> str:
        if len(self.cookie_key) < 48:
            raise SettingsError(
                "The sign-in cookie key must be at least 48 characters: set MEMBERDESK_COOKIE_KEY "
                "or cookie_key under [authenticator] in .streamlit/secrets.toml."
            )
        return self.cookie_key

    def __repr__(self) -> str:  # never print secrets
        return f"Settings(database_url={_redact_url(self.database_url)!r}, stripe_api_base={self.stripe_api_base!r})"


def _redact_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def read_secrets_file(path: Path | None = None) -> dict[str, Any]:
    path = path or Path(os.environ.get("MEMBERDESK_SECRETS_FILE", DEFAULT_SECRETS_FILE))
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML ({exc}); fix it or remove it.") from None


def load_settings(env: dict[str, str] | None = None, secrets: dict[str, Any] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    secrets = read_secrets_file() if secrets is None else secrets
    values: dict[str, Any] = {}
    for name, source in _SOURCES.items():
        table = secrets.get(source.section)
        if env.get(source.env, "") != "":
            values[name] = env[source.env]
        elif isinstance(table, dict) and source.key in table:
            values[name] = table[source.key]

    if "encryption_keys" in values:
        raw = values["encryption_keys"]
        keys = raw if isinstance(raw, list) else str(raw).split(",")
        values["encryption_keys"] = tuple(k.strip() for k in keys if str(k).strip())
    if "session_idle_minutes" in values:
        try:
            values["session_idle_minutes"] = int(values["session_idle_minutes"])
            if values["session_idle_minutes"] < 1:
                raise ValueError
        except ValueError:
            raise SettingsError("session_idle_minutes must be a whole number of minutes, 1 or more.") from None
    url = str(values.get("database_url", DEFAULT_DATABASE_URL))
    if not url.startswith(("sqlite", "postgresql")):
        raise SettingsError(
            f"DATABASE_URL must start with sqlite:/// or postgresql+psycopg://, not {_redact_url(url)!r}."
        )
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    values["database_url"] = url
    base = str(values.get("stripe_api_base", "")).rstrip("/")
    if base and not base.startswith(("http://", "https://")):
        raise SettingsError(f"STRIPE_API_BASE must be an http(s) address, not {base!r}.")
    values["stripe_api_base"] = base
    if values.get("alert_webhook_local_receiver"):
        values["alert_webhook_local_receiver"] = _local_receiver(str(values["alert_webhook_local_receiver"]))
    return Settings(**values)


def _local_receiver(value: str) -> str:
    """The local alert webhook receiver as ``scheme://host:port``: one server, named exactly."""
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    if (parts.scheme not in ("http", "https") or not parts.hostname or port is None
            or parts.path not in ("", "/") or parts.query or parts.username):
        raise SettingsError("MEMBERDESK_ALERT_WEBHOOK_LOCAL_RECEIVER (webhook_local_receiver under [notifications]) "
                            f"must be one server such as http://127.0.0.1:8765, scheme, host and port, not {value!r}.")
    return f"{parts.scheme}://{parts.hostname}:{port}"
