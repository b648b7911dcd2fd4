"""The audit log cannot be rewritten unnoticed: TRUNCATE is refused on PostgreSQL, every entry is
chained to the one before it, ``python -m cli audit verify`` names the first entry that was
changed, removed or inserted (exit 1), and two writers at once never fork the chain.

The tampering below is done the way an attacker with the database file or the table owner's role
would: lifting the triggers and the unique indexes first."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from cli import main as cli_main
from core import audit
from core.db import session_scope
from core.models import AuditEntry
from tests.support.db import TEST_KEY


def _write(engine: Engine, n: int, who: str = "sam") -> list[int]:
    ids = []
    for i in range(n):
        with session_scope(engine) as s:
            e = audit.record(s, actor=who, action="member.note_added", member_id=7, comment=f"note {i}",
                             before={"version": i}, after={"version": i + 1, "note": f"secret {i}"})
            s.flush()
            ids.append(e.id)
    return ids


def _lift_protection(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        conn.execute(text("DROP INDEX IF EXISTS uq_audit_log_seq"))
        conn.execute(text("DROP INDEX IF EXISTS uq_audit_log_prev_hash"))


@pytest.fixture(autouse=True)
def _restore_protection(engine: Engine):
    """PostgreSQL's test database is shared by the tests of a run: put back what a test lifted."""
    yield
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
            conn.execute(text("DELETE FROM audit_log"))  # rows that would break the unique indexes
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
            conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS uq_audit_log_seq ON audit_log (seq)"))
            conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS uq_audit_log_prev_hash ON audit_log (prev_hash)"))


def _cli_verify(database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MEMBERDESK_ENCRYPTION_KEYS", TEST_KEY)
    code = cli_main(["audit", "verify"])
    return code, capsys.readouterr().out.strip()


def test_an_untouched_log_verifies(engine, database_url, monkeypatch, capsys):
    _write(engine, 3)
    code, out = _cli_verify(database_url, monkeypatch, capsys)
    assert code == 0 and out.startswith("The audit log is intact: 3 chained entries; head ")
    with session_scope(engine) as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == audit.GENESIS and rows[1].prev_hash == rows[0].entry_hash
    # the before/after stay encrypted at rest; the chain hashes their plain JSON
    with engine.connect() as conn:
        assert "secret" not in str(conn.execute(text("SELECT after FROM audit_log")).all())


def test_a_changed_entry_is_named(engine, database_url, monkeypatch, capsys):
    ids = _write(engine, 3)
    _lift_protection(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'someone_else' WHERE id = :id"), {"id": ids[1]})
    code, out = _cli_verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert out.startswith(f"The audit log was changed: entry #{ids[1]} (member.note_added by someone_else at ")
    assert out.endswith("does not match its hash.")


def test_a_removed_entry_is_named(engine, database_url, monkeypatch, capsys):
    ids = _write(engine, 3)
    _lift_protection(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[1]})
    code, out = _cli_verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert out.startswith(f"Entries were removed from the audit log after entry #{ids[0]} and before entry #{ids[2]} ")


def test_removed_last_entries_are_found_by_the_head(engine, database_url, monkeypatch, capsys):
    ids = _write(engine, 3)
    _lift_protection(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[2]})
    code, out = _cli_verify(database_url, monkeypatch, capsys)
    assert (code, out) == (1, f"Entries were removed from the end of the audit log (after entry #{ids[1]}): "
                              "the chain recorded 3 entries, 2 are there.")


def test_an_inserted_entry_is_named(engine, database_url, monkeypatch, capsys):
    ids = _write(engine, 3)
    _lift_protection(engine)
    with session_scope(engine) as s:
        first = s.get(AuditEntry, ids[0])
        forged = AuditEntry(at=first.at, actor="mallory", action="staff.set_roles", target_type="staff",
                            target_id="mallory", after={"roles": "admin"}, outcome="ok", seq=first.seq,
                            prev_hash=first.entry_hash)
        forged.entry_hash = audit.digest(forged)  # a well-formed entry, linked to the first one
        s.add(forged)
        s.flush()
        forged_id = forged.id
    code, out = _cli_verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert out.startswith(f"An entry was inserted into the audit log: entry #{forged_id} (staff.set_roles by mallory")
    assert out.endswith(f"the entry after it (#{ids[1]}) links to #{ids[0]}.")


def test_an_entry_appended_behind_the_chain_is_named(engine, database_url, monkeypatch, capsys):
    ids = _write(engine, 2)
    with session_scope(engine) as s:
        last = s.get(AuditEntry, ids[-1])
        forged = AuditEntry(at=last.at, actor="mallory", action="auth.login", outcome="ok", seq=last.seq + 1,
                            prev_hash=last.entry_hash)
        forged.entry_hash = audit.digest(forged)
        s.add(forged)
        s.flush()
        forged_id = forged.id
    code, out = _cli_verify(database_url, monkeypatch, capsys)
    assert code == 1 and f"entry #{forged_id} (auth.login by mallory" in out


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True)
def test_truncate_is_refused_on_postgresql(engine):
    _write(engine, 1)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_log"))
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 1


def test_two_writers_at_once_never_fork_the_chain(engine):
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(who: str) -> None:
        try:
            barrier.wait(timeout=30)
            _write(engine, 20, who)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(who,)) for who in ("ann", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    with session_scope(engine) as s:
        seqs = sorted(s.scalars(select(AuditEntry.seq)))
        actors = {a for (a,) in s.execute(select(AuditEntry.actor).distinct())}
    assert seqs == list(range(1, 41)) and actors == {"ann", "bob"}
    assert audit.verify(engine).ok


def test_verify_while_others_append_reports_no_false_alarm(engine):
    _write(engine, 3)
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            _write(engine, 30, "busy")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    verdicts = []
    while not done.is_set():
        verdicts.append(audit.verify(engine))
    t.join(timeout=120)
    verdicts.append(audit.verify(engine))
    assert not errors
    assert all(v.ok for v in verdicts), [v.sentence for v in verdicts if not v.ok][:1]
    assert verdicts[-1].checked == 33
