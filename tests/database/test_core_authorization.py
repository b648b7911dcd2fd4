"""Authorization lives in core: every public function of ``core`` that writes to the database takes
the acting staff member and refuses one without the permission, and the refusal is audited.

The write functions are found by reading core's source (not from a list kept by hand): a public
module-level function that writes (``session.add``, ``update(...)``, ``audit.record``, a commit,
or a call to such a function of the same module) must either be guarded
(``core.permissions.guarded``) or be named below as a write the system makes on its own, with the
reason. A new write function with neither fails ``test_every_write_function_is_guarded``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.changes.errors import ChangeRefused
from core.models import AuditEntry, Base
from core.models.enums import Role
from core.permissions import GRANTS, GUARDED, Actor, Permission, PermissionDenied

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"

# Writes the system makes by itself, never on a person's behalf (or only after a guarded entry point
# has checked): each with why it needs no actor.
SYSTEM_WRITERS: dict[str, str] = {
    "core.audit.record": "the audit log itself; every caller is a write that was checked",
    "core.alerts.evaluate.ensure_rules": "seeds a default row per rule (the evaluator, cron)",
    "core.alerts.evaluate.evaluate": "the rule evaluator (cron / page refresh), no person's input",
    "core.alerts.evaluate.evaluate_if_stale": "the rule evaluator",
    "core.alerts.evaluate.rule_configs": "reads; seeds missing default rule rows first",
    "core.alerts.lifecycle.record_opened": "the evaluator opening an alert",
    "core.alerts.lifecycle.transition": "compare-and-set used by the evaluator and by the guarded "
                                        "acknowledge/resolve/snooze",
    "core.alerts.notify.deliver_pending": "notification delivery (evaluator)",
    "core.alerts.notify.enqueue": "notification queue (evaluator)",
    "core.changes.mirror.subscription": "records Stripe's answer inside a checked change",
    "core.changes.actions.base.record_staff_change": "records a local change inside a checked change",
    "core.changes.service.execute": "applies a request already authorized by submit or decide",
    "core.changes.service.preview": "writes only the audit entry of a refusal by the admin-set limits",
    "core.db.session_scope": "the unit-of-work helper",
    "core.comp_ends.end_due": "ends complimentary memberships whose days are over (the server, every minute)",
    "core.staff_sessions.start": "opens the session of a person who just proved their password",
    "core.staff_sessions.revoke": "ends the signed-in person's own session (sign-out, idle expiry)",
    "core.staff_sessions.revoke_all": "called inside guarded staff writes (disable, roles, password reset)",
    "core.staff_sessions.revoke_others": "called inside change_own_password, after its checks",
    "core.stripe_webhooks.receive.receive": "records a Stripe event whose signature was verified",
    "core.metrics.rollups.mark_stale": "derived metric tables",
    "core.metrics.rollups.refresh": "derived metric tables",
    "core.metrics.standing.refresh": "derived metric tables",
    "core.metrics.flow_delta.apply": "derived metric tables",
    "core.metrics.flow_delta.forget": "derived metric tables (marks the refresh applied)",
    "core.metrics.period_delta.apply": "derived metric tables",
    "core.metrics.segments.build": "derived metric tables",
    "core.lockout.record": "counts a sign-in attempt, for the sign-in itself (before anyone is signed in) and change_own_password",
    "core.staff.sign_out": "ends the signed-in person's own session (sign-out, idle expiry)",
    "core.staff.record_auth_event": "audits a person's own sign-in (a refused cookie)",
    "core.staff.change_own_password": "the signed-in person's own password: their live session and current password are checked",
    "core.staff_sessions.keep_alive": "slides the signed-in person's own session",
    "core.sync.backfill.run_backfill": "inside run_sync, which is guarded",
    "core.sync.backfill.start_or_resume": "inside run_sync",
    "core.sync.backfill.state": "inside run_sync",
    "core.sync.events.fetch_events": "inside run_sync",
    "core.sync.ledger.record": "inside run_sync",
    "core.sync.locks.acquire": "the sync lock",
    "core.sync.process.process_pending": "inside run_sync",
    "core.permissions.check": "writes only the refusal it reports",
    "core.permissions.guarded": "writes only the refusal it reports",
    "core.permissions.record_refusal": "writes only the refusal it reports",
}
# Packages that are not our database's writers: the Stripe stand-in has its own store, the
# Stripe mirror is written only by the (guarded) sync, migrations run as the table owner.
SKIPPED_PACKAGES = ("stripe_sandbox", "core.stripe_store", "core.migrations")

_SESSION_NAMES = {"s", "session", "sess", "db", "conn", "connection"}
_SQL_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|TRUNCATE|MERGE)\b", re.I)


def _writes_directly(fn: ast.FunctionDef) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL_WRITE.match(node.value):
            return True  # hand-written SQL
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute):
            owner = f.value
            owner_name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if f.attr == "record" and owner_name == "audit":
                return True
            if f.attr in {"add", "add_all", "delete", "merge"} and (owner_name in _SESSION_NAMES
                                                                   or owner_name.endswith("session")):
                return True
            if f.attr == "commit":
                return True
        if isinstance(f, ast.Name) and f.id in {"update", "insert", "delete"}:
            return True
    return False


def write_functions(source: str, module: str) -> set[str]:
    """Public module-level functions of ``source`` that write, directly or through a function of
    the same module."""
    tree = ast.parse(source)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    writers = {name for name, fn in funcs.items() if _writes_directly(fn)}
    grew = True
    while grew:
        grew = False
        for name, fn in funcs.items():
            if name not in writers and any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                                           and n.func.id in writers for n in ast.walk(fn)):
                writers.add(name)
                grew = True
    return {f"{module}.{name}" for name in writers if not name.startswith("_")}


def core_write_functions() -> set[str]:
    found: set[str] = set()
    for path in sorted(CORE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith(SKIPPED_PACKAGES):
            continue
        found |= write_functions(path.read_text(encoding="utf-8"), module)
    return found


def _import_guarded() -> None:
    for path in sorted(CORE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith(SKIPPED_PACKAGES) or module.startswith(("cli", "core.__main__")):
            continue
        importlib.import_module(module)


_import_guarded()


class TestEveryWriteIsGuarded:
    def test_every_write_function_is_guarded(self) -> None:
        writers = core_write_functions()
        unguarded = sorted(writers - set(GUARDED) - set(SYSTEM_WRITERS))
        assert not unguarded, (
            "These core functions write but take no acting staff member: add @guarded(Permission...) "
            f"(core.permissions) or, for a write the system makes alone, name it in SYSTEM_WRITERS: {unguarded}")

    def test_the_scan_finds_a_new_unguarded_write(self) -> None:
        """A write function someone adds tomorrow is caught, directly or through a helper."""
        source = (
            "from core import audit\n"
            "def set_colour(session, colour):\n    _save(session, colour)\n"
            "def _save(session, colour):\n    session.add(colour)\n"
            "def grant(s, who):\n    s.execute(update(T).values(x=who))\n"
            "def note(session, text):\n    audit.record(session, actor='x', action='y')\n"
            "def read(session):\n    return session.scalar(1)\n"
        )
        assert write_functions(source, "core.tomorrow") == {
            "core.tomorrow.set_colour", "core.tomorrow.grant", "core.tomorrow.note"}

    def test_the_allow_list_names_real_functions(self) -> None:
        stale = sorted(set(SYSTEM_WRITERS) - core_write_functions())
        assert not stale, f"SYSTEM_WRITERS names functions that no longer write or exist: {stale}"

    def test_every_guarded_function_is_exercised_below(self) -> None:
        assert set(GUARDED) == set(CALLS), sorted(set(GUARDED) ^ set(CALLS))


# ---------------------------------------------------------------- each refuses, and says so in the log

def _without(permission: Permission) -> Actor:
    """An actor holding every role that does not grant ``permission`` (possibly none)."""
    return Actor.of("mallory", [r.value for r in Role if r not in GRANTS[permission]])


def _with(permission: Permission) -> Actor:
    return Actor.of("trusty", [r.value for r in GRANTS[permission]])


def _world(engine: Engine) -> dict[str, Any]:
    from core import staff
    from core.models import Alert
    from tests.support.factories import at, make_member, make_tier

    staff.add_account(engine, actor=Actor.system("setup"), username="target", name="Tara Get", email="t@example.com",
                      roles="support", password="a-long-password", bcrypt_rounds=4)
    with Session(engine) as s:
        member = make_member(s, email="ann@example.com", name="Ann Lee")
        make_tier(s, code="premium", rank=1)
        alert = Alert(rule="stripe_stale", scope="all", status="open", severity="high", value=30.0, baseline=None,
                      hint="Stripe data is old", details={}, opened_at=at("2026-03-01 00:00"))
        s.add(alert)
        s.commit()
        return {"member_id": member.id, "member_version": member.version, "alert_id": alert.id}


def _change(w: dict[str, Any], action: str, params: dict[str, Any]) -> Any:
    from core.changes import REASONS, ChangeInput

    return ChangeInput(action=action, member_id=w["member_id"], member_version=w["member_version"],
                       reason=REASONS[action][0], comment="asked by phone", params=params)


# name -> (permission the call needs, call(engine, session, world, actor))
Call = Callable[[Engine, Session, dict[str, Any], Actor], Any]
CALLS: dict[str, tuple[Permission, Call]] = {
    "core.changes.limits.save_limits": (Permission.EDIT_SETTINGS,
                                        lambda e, s, w, a: importlib.import_module("core.changes.limits").save_limits(
                                            e, actor=a, limits=importlib.import_module("core.changes.limits")
                                            .Limits.from_value({"refund_max": {"support": None}}))),
    "core.members.add_note": (Permission.ADD_NOTE, lambda e, s, w, a: importlib.import_module("core.members").add_note(
        e, actor=a, member_id=w["member_id"], body="hello")),
    "core.changes.service.submit": (Permission.CHANGE_TIER,
                                    lambda e, s, w, a: importlib.import_module("core.changes").submit(
                                        e, _change(w, "change_price", {"price_id": 1}), a)),
    "core.changes.approvals.decide": (Permission.APPROVE_CHANGES,
                                      lambda e, s, w, a: importlib.import_module("core.changes").decide(
                                          e, 1, a, approve=True, note="fine")),
    "core.changes.approvals.withdraw": (Permission.REFUND,
                                        lambda e, s, w, a: importlib.import_module("core.changes").withdraw(
                                            e, 1, a, note="wrong payment")),
    "core.changes.approvals.resume": (Permission.CHANGE_MEMBERSHIP,
                                      lambda e, s, w, a: importlib.import_module("core.changes").resume(e, 1, a)),
    "core.alerts.lifecycle.acknowledge": (Permission.MANAGE_ALERTS,
                                          lambda e, s, w, a: importlib.import_module("core.alerts").acknowledge(
                                              e, w["alert_id"], actor=a, note="looking")),
    "core.alerts.lifecycle.resolve": (Permission.MANAGE_ALERTS,
                                      lambda e, s, w, a: importlib.import_module("core.alerts").resolve(
                                          e, w["alert_id"], actor=a, note="fixed")),
    "core.alerts.lifecycle.snooze": (Permission.MANAGE_ALERTS,
                                     lambda e, s, w, a: importlib.import_module("core.alerts").snooze(
                                         e, w["alert_id"], actor=a, hours=2, note="later")),
    "core.alerts.evaluate.configure_rule": (Permission.MANAGE_ALERTS,
                                            lambda e, s, w, a: importlib.import_module("core.alerts").configure_rule(
                                                e, "stripe_stale", actor=a, enabled=False)),
    "core.alerts.evaluate.configure_rule_from_form": (
        Permission.MANAGE_ALERTS, lambda e, s, w, a: importlib.import_module("core.alerts").configure_rule_from_form(
            e, "stripe_stale", actor=a, enabled=False, thresholds={}, emails="", webhooks="")),
    "core.sync.run.run_sync": (Permission.RUN_SYNC, lambda e, s, w, a: importlib.import_module("core.sync").run_sync(
        e, None, actor=a)),
    "core.sync.reconcile.resync_member": (Permission.RUN_SYNC,
                                          lambda e, s, w, a: importlib.import_module("core.sync").resync_member(
                                              e, None, w["member_id"], actor=a)),
    "core.sync.staff_actions.sync_now": (Permission.RUN_SYNC,
                                   lambda e, s, w, a: importlib.import_module("core.sync.staff_actions").sync_now(
                                       e, None, actor=a)),
    "core.sync.staff_actions.resync_member_now": (
        Permission.RUN_SYNC, lambda e, s, w, a: importlib.import_module("core.sync.staff_actions").resync_member_now(
            e, None, actor=a, member_id=w["member_id"])),
}

# The staff and business-settings writes: each takes the engine and owns its transaction (the
# Admin page, the CLI and the demo loader all call these), so each is called with the engine alone.
_ENGINE_WRITES: dict[tuple[str, str], tuple[Permission, dict[str, Any]]] = {
    ("core.staff", "add_account"): (Permission.MANAGE_STAFF, {
        "username": "newadmin", "name": "New Admin", "email": "n@example.com", "roles": "admin",
        "password": "a-long-password", "bcrypt_rounds": 4}),
    ("core.staff", "change_roles"): (Permission.MANAGE_STAFF, {"username": "target", "roles": "admin"}),
    ("core.staff", "change_active"): (Permission.MANAGE_STAFF, {"username": "target", "active": False}),
    ("core.staff", "change_password"): (Permission.MANAGE_STAFF, {
        "username": "target", "password": "another-long-one", "bcrypt_rounds": 4}),
    ("core.staff", "unlock_account"): (Permission.MANAGE_STAFF, {"username": "target"}),
    ("core.settings.business", "save"): (Permission.EDIT_SETTINGS, {"week_start": "sunday"}),
    ("core.settings.business", "save_rate"): (Permission.EDIT_SETTINGS, {
        "currency": "EUR", "month": "2026-03", "usd_per_unit": "1.2"}),
}
for (_module, _name), (_permission, _kwargs) in _ENGINE_WRITES.items():
    CALLS[f"{_module}.{_name}"] = (_permission, lambda e, s, w, a, m=_module, f=_name, kw=_kwargs:
                                   getattr(importlib.import_module(m), f)(e, actor=a, **kw))


def _row_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, PermissionDenied) or (isinstance(exc, ChangeRefused) and exc.code == "permission")


@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_write_refuses_an_actor_without_the_permission_and_audits_it(engine: Engine, name: str) -> None:
    permission, call = CALLS[name]
    world = _world(engine)
    mallory = _without(permission)
    before = _row_counts(engine)
    with Session(engine) as s:
        with pytest.raises(Exception) as refused:  # noqa: PT011 - the type is checked just below
            call(engine, s, world, mallory)
        s.rollback()
    assert _refused(refused.value), f"{name} raised {refused.value!r}, not a permission refusal"
    assert str(refused.value).strip().endswith("."), "the refusal is a sentence"
    after = _row_counts(engine)
    assert {t: n - before[t] for t, n in after.items() if n != before[t]} == {"audit_log": 1}, \
        f"{name} wrote something besides the refusal"
    with Session(engine) as s:
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
    assert (entry.actor, entry.outcome) == ("mallory", "refused")

    # The same call by someone holding the permission gets past the check (it may still fail on
    # something else): the refusal above was about the actor, not the arguments.
    with Session(engine) as s:
        try:
            call(engine, s, world, _with(permission))
            s.commit()
        except Exception as exc:  # noqa: BLE001
            assert not _refused(exc), f"{name} refused an actor who holds {permission.value}: {exc}"


def test_a_write_without_an_actor_object_is_a_programming_error(engine: Engine) -> None:
    from core import staff

    with pytest.raises(TypeError, match="acting staff member"):
        staff.change_roles(engine, actor="admin", username="target", roles="admin")


def test_support_cannot_create_an_admin_nor_promote_itself(engine: Engine) -> None:
    """The review's own attack: a support actor created an admin and promoted itself."""
    from core import staff

    _world(engine)
    sam = Actor.of("target", "support")
    with pytest.raises(PermissionDenied, match="Only admins"):
        staff.add_account(engine, actor=sam, username="evil", name="Evil", email="e@example.com", roles="admin",
                          password="a-long-password", bcrypt_rounds=4)
    with pytest.raises(PermissionDenied):
        staff.change_roles(engine, actor=sam, username="target", roles="admin")
    with Session(engine) as s:
        assert staff.get(s, "evil") is None and staff.get(s, "target").roles == "support"
        refusals = s.scalars(select(AuditEntry).where(AuditEntry.action == "auth.permission_refused")).all()
        assert [(r.actor, r.target_id, r.comment) for r in refusals] == [
            ("target", "manage_staff", "core.staff.add_account"), ("target", "manage_staff", "core.staff.change_roles")]


def test_finance_cannot_reset_the_admins_password(engine: Engine) -> None:
    from core import staff

    _world(engine)
    with pytest.raises(PermissionDenied):
        staff.change_password(engine, actor=Actor.of("fin", "finance"), username="target", password="pwned-password")


def test_the_cli_acts_as_a_named_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBERDESK_OPERATOR", "Night-Shift")
    op = Actor.operator()
    assert op.username == "cli:night-shift" and op.can(Permission.MANAGE_STAFF)
    assert inspect.signature(importlib.import_module("core.sync").run_sync).parameters["actor"].kind \
        is inspect.Parameter.KEYWORD_ONLY
