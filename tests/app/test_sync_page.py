"""The admin Stripe sync page (AppTest) against the sandbox: Sync now with its outcome, the runs
table, reconciliation and one member's resync; each staff action lands in the audit log."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.models import AuditEntry, Member
from core.models.stripe_sync import SyncRun
from tests.support.apptest import page_app_test, texts
from tests.support.sandbox import SandboxProcess, gateway_client
from tests.support.worlds import build_stripe_world


def _page(database_url: str, sb: SandboxProcess):
    at = page_app_test(database_url, "stripe_sync.py", role="admin")
    at.secrets["stripe"] = {"api_key": sb.api_key, "api_base": sb.url}
    return at.run(timeout=60)


class TestStripeSyncPage:
    def test_sync_now_reconcile_and_resync_member(self, engine: Engine, database_url: str,
                                                  sandbox: SandboxProcess) -> None:
        build_stripe_world(gateway_client(sandbox), 3)
        at = _page(database_url, sandbox)
        assert not at.exception
        assert "Stripe data has not been synced yet." in texts(at)
        assert "Nothing has been synced yet. Press Sync now" in texts(at) and "No sync has run yet." in texts(at)

        at.button(key="FormSubmitter:sync_now-Sync now").click()
        at.run(timeout=120)
        assert not at.exception
        assert any("Sync succeeded" in s.value for s in at.success), texts(at)
        assert "Stripe data through" in texts(at)
        with Session(engine) as s:
            run = s.scalars(select(SyncRun)).one()
            assert (run.status, run.holder) == ("succeeded", "dashboard:admin")
            audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "stripe.sync")).one()
            assert audit.actor == "admin" and audit.outcome == "ok"
            member_id = s.scalars(select(Member.id).where(Member.stripe_customer_id.is_not(None))).first()

        at.button(key="FormSubmitter:reconcile-Compare with Stripe").click()
        at.run(timeout=60)
        assert any("groups agree with Stripe" in s.value for s in at.success), texts(at)

        at.number_input[0].set_value(member_id)
        at.button(key="FormSubmitter:member-Resync from Stripe").click()
        at.run(timeout=60)
        assert any(f"Member {member_id} resynced" in s.value for s in at.success), texts(at)
        assert any("agrees with Stripe" in s.value for s in at.success)
        with Session(engine) as s:
            entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "stripe.resync_member")).one()
            assert entry.member_id == member_id

    def test_sync_failure_is_shown_as_a_sentence(self, engine: Engine, database_url: str,
                                                 sandbox: SandboxProcess) -> None:
        sandbox.fault("/v1/", status=500, times=None)
        at = _page(database_url, sandbox)
        at.button(key="FormSubmitter:sync_now-Sync now").click()
        at.run(timeout=120)
        assert not at.exception
        assert any("Stripe had an internal error" in e.value for e in at.error), texts(at)
        with Session(engine) as s:
            assert s.scalars(select(SyncRun.status)).all() == ["failed"]
