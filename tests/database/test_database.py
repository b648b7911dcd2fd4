"""The schema, the column types' promises, encryption at rest, and the append-only audit log."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from cli.keys import rotate_all
from core import audit, crypto
from core.db.migrate import current_revision, head_revision
from core.models import AuditEntry, Member, StaffNote
from tests.support.db import TEST_KEY
from tests.support.factories import at, make_member


def test_migrations_reach_head(engine):
    assert current_revision(engine) == head_revision()


def test_the_quick_schema_check_agrees_with_alembic(engine):
    """``is_up_to_date`` reads revisions without Alembic; Alembic must see the same head and
    current revision (a migration file breaking the numbering would fail here)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from core.db.migrate import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        assert current_revision(engine) == MigrationContext.configure(conn).get_current_revision()


def test_times_come_back_aware_utc(session):
    member = make_member(session, created_at=at("2026-03-29 01:30"))
    session.commit()
    session.expire_all()
    loaded = session.get(Member, member.id)
    assert loaded.created_at == at("2026-03-29 01:30")
    assert loaded.created_at.tzinfo is not None


def test_naive_times_are_refused(session):
    session.add(Member(email="naive@example.com", name="N", created_at=datetime(2026, 1, 1)))
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()


def test_money_fits_64_bits(session):
    from tests.support.factories import make_payment

    member = make_member(session)
    make_payment(session, member=member, amount=5_000_000_000_00, currency="JPY")
    session.commit()
    assert session.scalar(text("SELECT amount FROM payments")) == 5_000_000_000_00


def test_email_is_unique(session):
    make_member(session, email="same@example.com")
    with pytest.raises(IntegrityError):
        make_member(session, email="same@example.com")


class TestEncryptionAtRest:
    def test_phone_and_notes_are_not_stored_in_clear(self, session):
        member = make_member(session)
        member.phone = "+44 20 7946 0000"
        session.add(StaffNote(member_id=member.id, author="sam", body="Asked about a refund"))
        session.commit()
        raw_phone = session.scalar(text("SELECT phone FROM members"))
        raw_note = session.scalar(text("SELECT body FROM staff_notes"))
        assert "7946" not in raw_phone and "refund" not in raw_note
        session.expire_all()
        assert session.get(Member, member.id).phone == "+44 20 7946 0000"

    def test_missing_key_is_an_error_not_plaintext(self, session):
        member = make_member(session)
        crypto.set_keyring(None)
        member.phone = "+1 555 0100"
        with pytest.raises(StatementError, match="No encryption key is configured"):
            session.flush()

    def test_rotation_re_encrypts_everything_and_old_key_can_go(self, engine, session):
        member = make_member(session)
        member.phone = "+1 555 0100"
        session.add(StaffNote(member_id=member.id, author="sam", body="note"))
        audit.record(session, actor="sam", action="member.contact", member_id=member.id,
                     before={"phone": None}, after={"phone": "+1 555 0100"})
        session.commit()

        new_key = crypto.generate_key()
        crypto.set_keyring(crypto.KeyRing([new_key, TEST_KEY]))
        assert rotate_all(engine, actor="test") == 4  # phone, note, audit before + after

        crypto.set_keyring(crypto.KeyRing([new_key]))  # old key removed
        session.expire_all()
        assert session.get(Member, member.id).phone == "+1 555 0100"
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert entries[0].after == {"phone": "+1 555 0100"}
        assert entries[-1].action == "crypto.rotate_key"
        assert audit.verify(engine).ok  # the chain hashes plain before/after: re-encryption keeps it

        # The append-only triggers are back after the rotation.
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text("DELETE FROM audit_log"))

    def test_rotation_reaches_a_sealed_request_kept_in_the_queue(self, engine, session):
        # A contact edit's params are sealed inside a plain JSON column: rotation passed them by,
        # and once the old key was gone the request could not be read (Resume crashed).
        from core.changes import service
        from core.changes.actions import ACTIONS
        from core.models import ChangeRequest

        member = make_member(session)
        params, comment = service._seal(ACTIONS["edit_contact"], {"phone": "+1 555 0199"}, "asked by phone")
        session.add(ChangeRequest(idempotency_key="k-sealed", action="edit_contact", member_id=member.id,
                                  params=params, reason="member_request", comment=comment, member_version=member.version, requested_by="sam",
                                  requested_at=at("2026-03-01 12:00"), status="applying"))
        session.commit()
        new_key = crypto.generate_key()
        crypto.set_keyring(crypto.KeyRing([new_key, TEST_KEY]))
        rotate_all(engine, actor="test")
        crypto.set_keyring(crypto.KeyRing([new_key]))  # old key removed
        session.expire_all()
        req = session.scalars(select(ChangeRequest)).one()
        assert service._unseal(req) == ({"phone": "+1 555 0199"}, "asked by phone")


class TestAuditLogIsAppendOnly:
    def test_update_and_delete_refused_by_the_database(self, session):
        audit.record(session, actor="sam", action="member.note", member_id=1)
        session.commit()
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text("UPDATE audit_log SET actor = 'mallory'"))
        session.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text("DELETE FROM audit_log"))
        session.rollback()
        assert session.scalar(select(AuditEntry.actor)) == "sam"


def test_statuses_read_back_as_their_enum_and_are_stored_as_the_same_strings(session):
    """A status column holds Stripe's plain string (no database enum, no migration) and reads back
    as its ``StrEnum`` member; a value Stripe adds later is stored as sent and reads back as that string."""
    from core.models import Subscription
    from core.models.enums import SubscriptionStatus
    from tests.support.factories import make_price, make_subscription, make_tier

    member = make_member(session)
    price = make_price(session, tier=make_tier(session))
    known = make_subscription(session, member=member, price=price, status="past_due")
    later = make_subscription(session, member=make_member(session, email="later@example.com"), price=price,
                              status="some_new_status")
    session.commit()
    session.expire_all()
    assert session.get(Subscription, known.id).status is SubscriptionStatus.PAST_DUE
    assert session.get(Subscription, later.id).status == "some_new_status"
    stored = dict(session.execute(text("SELECT id, status FROM subscriptions")).all())
    assert stored == {known.id: "past_due", later.id: "some_new_status"}
    assert session.scalar(select(Subscription.id).where(Subscription.status == SubscriptionStatus.PAST_DUE)) == known.id


def test_status_columns_typed_as_enums_match_the_migrated_schema(engine):
    """Typing a status column as its enum changes no schema: Alembic finds the migrated column
    the models' (the same VARCHAR, nullable as before)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from core.models import Base

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    typed = {("subscriptions", "status"), ("membership_changes", "from_status"), ("membership_changes", "to_status"),
             ("invoices", "status"), ("payments", "status"), ("disputes", "status")}
    changed = [op for d in diffs if isinstance(d, list) for op in d if (op[2], op[3]) in typed]
    assert changed == []


def test_a_savepoint_waits_for_another_writer_instead_of_failing(engine):
    """Each Stripe event is applied in a savepoint: it reads, then writes. On SQLite a savepoint
    opened a deferred transaction, and a write after another connection had committed failed at
    once with "database is locked" (every event of a staff change did, racing the change's own
    rows). Now the other writer waits for the savepoint's transaction, and both writes land."""
    import threading
    import time

    from sqlalchemy.orm import Session

    from core.models import Setting

    with Session(engine) as s:
        s.add(Setting(key="probe", value=0))
        s.commit()
    other_done = threading.Event()

    def other_writer() -> None:
        with Session(engine) as s:
            s.add(Setting(key="other", value=1))
            s.commit()
        other_done.set()

    with Session(engine) as s:
        with s.begin_nested():
            assert s.get(Setting, "probe").value == 0
            thread = threading.Thread(target=other_writer)
            thread.start()
            time.sleep(0.3)  # the other connection writes meanwhile (or waits for this one)
            s.get(Setting, "probe").value = 2
            s.flush()
        s.commit()
    thread.join(timeout=30)
    assert other_done.is_set()
    with Session(engine) as s:
        assert {k: v for k, v in s.execute(select(Setting.key, Setting.value))
                if k in ("probe", "other")} == {"probe": 2, "other": 1}
