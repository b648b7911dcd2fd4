"""Key commands: ``keygen``, ``rotate-key`` and ``init-local`` (the embedded default's secrets)."""

from __future__ import annotations

import argparse
import secrets as pysecrets

from sqlalchemy import Connection, Engine, Table, Text, column, select, table, text, update
from sqlalchemy.orm import Session

from cli.common import engine, progress, settings
from core import audit, crypto
from core.db import session_scope
from core.db.types import EncryptedJSON, EncryptedText
from core.models import Base, ChangeRequest
from core.settings import DEFAULT_SECRETS_FILE, ROOT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="print a new encryption key")
    p.set_defaults(func=lambda a: print(crypto.generate_key()) or 0)

    p = sub.add_parser(
        "rotate-key", help="re-encrypt every encrypted field with the first configured key",
        description="Put the new key first in MEMBERDESK_ENCRYPTION_KEYS, keep the old ones after it, run "
                    "this, then remove the old keys. See docs/security.md.",
    )
    p.set_defaults(func=run_rotate)

    p = sub.add_parser("init-local", help="create .streamlit/secrets.toml for the embedded default, once")
    p.set_defaults(func=run_init_local)


def encrypted_columns() -> list[tuple[Table, str, str]]:
    """(table, primary key column, encrypted column) for every encrypted field in the schema."""
    out = []
    for tbl in Base.metadata.sorted_tables:
        pk = list(tbl.primary_key.columns)[0].name
        for col in tbl.columns:
            if isinstance(col.type, EncryptedText | EncryptedJSON):
                out.append((tbl, pk, col.name))
    return out


def rotate_all(eng: Engine, actor: str = "cli") -> int:
    """Re-encrypt every stored token with the primary key, in one transaction. Returns the count.

    The audit log's append-only triggers are lifted for this one statement set and restored in the
    same transaction; the rotation itself is audited.
    """
    ring = crypto.keyring()
    count = 0
    with session_scope(eng) as session:
        conn = session.connection()
        dialect = conn.dialect.name
        _drop_audit_triggers(conn, dialect)
        for tbl, pk, name in encrypted_columns():
            raw = table(tbl.name, column(pk), column(name, Text()))
            rows = conn.execute(select(raw.c[pk], raw.c[name]).where(raw.c[name].is_not(None))).all()
            for key, token in rows:
                new = ring.rotate(token)
                if new != token:
                    conn.execute(update(raw).where(raw.c[pk] == key).values({name: new}))
                    count += 1
        count += _rotate_sealed_requests(session, ring)
        _create_audit_triggers(conn, dialect)
        audit.record(session, actor=actor, action="crypto.rotate_key", after={"re_encrypted": count})
    return count


def _rotate_sealed_requests(session: Session, ring: crypto.KeyRing) -> int:
    """The sealed change requests (contact details, notes: ``core.changes.service._seal``) hold
    a token inside a plain JSON column, which the column types above do not reach: without this a
    request still waiting or being applied could not be read once the old key was removed."""
    count = 0
    for req in session.scalars(select(ChangeRequest)):
        params = req.params
        if isinstance(params, dict) and set(params) == {"sealed"} and isinstance(params["sealed"], str):
            new = ring.rotate(params["sealed"])
            if new != params["sealed"]:
                req.params = {"sealed": new}
                count += 1
    session.flush()
    return count


def _drop_audit_triggers(conn: Connection, dialect: str) -> None:
    if dialect == "sqlite":
        conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
    else:
        conn.execute(text("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log"))


def _create_audit_triggers(conn: Connection, dialect: str) -> None:
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            conn.execute(text(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            ))
    else:
        conn.execute(text(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        ))


def run_rotate(args: argparse.Namespace) -> int:
    count = rotate_all(engine())
    progress(f"re-encrypted {count} stored values with the first key; old keys can now be removed")
    return 0


SECRETS_TEMPLATE = """\
# Local secrets for the embedded default (SQLite + the local Stripe sandbox).
# Created by `python -m cli init-local`; git-ignored. Never commit this file.

[memberdesk]
encryption_keys = ["{encryption_key}"]

[authenticator]
cookie_key = "{cookie_key}"

[stripe]
api_key = "sk_test_sandbox_{sandbox_key}"
api_base = "http://127.0.0.1:{sandbox_port}"
webhook_secret = "whsec_{webhook_secret}"
"""


def run_init_local(args: argparse.Namespace) -> int:
    from core.settings import DEFAULT_SANDBOX_PORT

    path = DEFAULT_SECRETS_FILE
    if path.exists():
        progress(f"{path.relative_to(ROOT)} exists; keeping it")
        settings()  # still validate it
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SECRETS_TEMPLATE.format(
        encryption_key=crypto.generate_key(), cookie_key=pysecrets.token_urlsafe(48),
        sandbox_key=pysecrets.token_hex(12), sandbox_port=DEFAULT_SANDBOX_PORT,
        webhook_secret=pysecrets.token_hex(16),
    ), encoding="utf-8")
    path.chmod(0o600)
    progress(f"created {path.relative_to(ROOT)} with a new encryption key and cookie key")
    return 0
