"""``python -m cli demo``: loads, refuses a populated database, replaces it, feeds the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from cli import main
from core.models import AuditEntry, Member, StaffAccount
from core.settings import Settings


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MEMBERDESK_ENCRYPTION_KEYS", settings.encryption_keys[0])
    monkeypatch.setenv("MEMBERDESK_COOKIE_KEY", settings.cookie_key)
    monkeypatch.setenv("MEMBERDESK_SECRETS_FILE", str(tmp_path / "absent.toml"))


def _members(engine: Engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(Member)) or 0


def test_demo_command_refuses_then_replaces(cli_env: None, engine: Engine, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "sandbox.db"
    args = ["demo", "--members", "40", "--seed", "3", "--now", "2026-11-27", "--bcrypt-rounds", "4"]
    assert main(args + ["--sandbox-state", str(state)]) == 0
    assert _members(engine) == 40
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(StaffAccount)) == 4
        audit_rows = s.scalar(select(func.count()).select_from(AuditEntry))
    from stripe_sandbox.store import SandboxStore

    store = SandboxStore(state)
    assert store.count("customer") > 0 and store.count("event") > 0
    store.close()

    assert main(args) == 2
    assert "already has 40 members" in capsys.readouterr().err
    assert main(args[:2] + ["25"] + args[3:] + ["--replace"]) == 0
    assert _members(engine) == 25
    with Session(engine) as s:  # the append-only audit log is never emptied
        assert s.scalar(select(func.count()).select_from(AuditEntry)) >= audit_rows


def test_bad_now_is_one_sentence(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--members", "5", "--now", "yesterday"]) == 2
    assert "--now must be a date" in capsys.readouterr().err


def test_demo_gives_the_alerts_page_a_past(cli_env: None, engine: Engine) -> None:
    from core.models import Alert
    from tests.support.factories import at

    assert main(["demo", "--members", "2000", "--seed", "1", "--now", "2026-11-27", "--bcrypt-rounds", "4"]) == 0
    with Session(engine) as s:
        alerts = {a.rule: a for a in s.scalars(select(Alert))}
    # The refund burst planted 26 days before now: opened the day after, clear the next day, resolved a day later.
    refund = alerts["refund_spike"]
    assert refund.status == "resolved"
    assert refund.opened_at == at("2026-11-02 00:00") and refund.resolved_at == at("2026-11-04 00:00")
