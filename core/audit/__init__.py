"""The one way to write the audit log, and the check that it was not rewritten.

Append-only: there is deliberately no update or delete, database triggers refuse them (and
TRUNCATE on PostgreSQL), and every entry is chained to the one before it:

- ``seq`` is the entry's position, ``prev_hash`` the previous entry's ``entry_hash`` (64 zeros for
  the first), ``entry_hash`` the SHA-256 of the entry's content (before/after as plain JSON, so a
  key rotation re-encrypting them keeps the chain) together with ``seq`` and ``prev_hash``.
- Appends are serialized: ``record`` first updates the single ``audit_chain_head`` row, which
  takes that row's lock on PostgreSQL and the database's write lock on SQLite, and holds it until
  the caller's transaction ends; unique indexes on ``seq`` and ``prev_hash`` make a fork
  impossible even for a writer that bypassed this function.
- ``verify`` walks the chain and names the first entry that was changed, removed or inserted.

What the chain cannot do on its own: someone who can write the table and recomputes every hash
after the point they changed leaves a consistent chain. The head hash ``verify`` prints, kept
somewhere else (a daily log line, a ticket), exposes that; docs/security.md says how the app's
database role is kept from rewriting the table at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.orm import Session

from core.models import AuditChainHead, AuditEntry
from core.timeutil import utc_now

GENESIS = "0" * 64
_HEAD = AuditChainHead.__table__


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    member_id: int | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    reason: str | None = None,
    comment: str | None = None,
    before: Any = None,
    after: Any = None,
    stripe_ids: Any = None,
    request_id: str | None = None,
    approved_by: str | None = None,
    outcome: str = "ok",
    at: datetime | None = None,
) -> AuditEntry:
    """Add an audit entry to ``session``; it commits with the change it describes. ``at`` is when
    the action took effect when that is not now (an alert evaluation run as of an earlier moment,
    as the demo's history does); the chain's order is the order of recording either way."""
    entry = AuditEntry(
        at=at or utc_now(), actor=actor, action=action, member_id=member_id, target_type=target_type,
        target_id=None if target_id is None else str(target_id), reason=reason, comment=comment,
        before=before, after=after, stripe_ids=stripe_ids, request_id=request_id,
        approved_by=approved_by, outcome=outcome,
    )
    seq, prev = _take_head(session)
    entry.seq, entry.prev_hash = seq, prev
    entry.entry_hash = digest(entry)
    session.add(entry)
    session.connection().execute(update(_HEAD).where(_HEAD.c.id == 1).values(hash=entry.entry_hash))
    return entry


def _take_head(session: Session) -> tuple[int, str]:
    """Advance the head by one (the lock that serializes appends); returns (seq, previous hash)."""
    # Core statements on the session's connection: the ORM's bulk-update path costs more than the
    # statement itself, on every audited write.
    row = session.connection().execute(
        update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + 1).returning(_HEAD.c.seq, _HEAD.c.hash)
    ).one_or_none()
    if row is None:  # a schema made without the migration's first row: start the chain here
        session.add(AuditChainHead(id=1, seq=1, hash=GENESIS))
        session.flush()
        return 1, GENESIS
    return int(row[0]), str(row[1])


def _plain(value: Any) -> Any:
    """The value as it reads back from the database (JSON round trip, like EncryptedJSON)."""
    return None if value is None else json.loads(json.dumps(value, default=str, sort_keys=True))


def _moment(at: datetime) -> str:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat(timespec="microseconds")


def digest(entry: AuditEntry) -> str:
    content = [
        entry.seq, entry.prev_hash, _moment(entry.at), entry.actor, entry.action, entry.member_id, entry.target_type,
        entry.target_id, entry.reason, entry.comment, _plain(entry.before), _plain(entry.after),
        _plain(entry.stripe_ids), entry.request_id, entry.approved_by, entry.outcome or "ok",
    ]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- verification

@dataclass(frozen=True)
class Verdict:
    ok: bool
    sentence: str
    checked: int = 0  # chained entries checked
    before_chain: int = 0  # entries written before the chain existed
    entry_id: int | None = None  # the first entry found changed, removed before, or inserted
    head: str = GENESIS


def _describe(e: AuditEntry) -> str:
    return f"entry #{e.id} ({e.action} by {e.actor} at {_moment(e.at)[:19]} UTC)"


def verify(engine: Engine) -> Verdict:
    """Walk the chain in order; the first problem found is named in one sentence.

    Streams the log (constant memory); on a broken link it looks up where the link points. Safe while
    others append: it checks the chain up to the head it read first (an append commits its entry
    and the head together), then that nothing beyond the head as read afterwards exists."""
    with Session(engine) as s:
        head = s.get(AuditChainHead, 1)
        head_seq, head_hash = (head.seq, head.hash) if head is not None else (None, None)
        s.expunge_all()
        legacy = checked = 0
        chained_started = False
        previous: tuple[int, int, str] | None = None  # (id, seq, entry_hash) of the last good entry
        broken: tuple[str, int] | None = None  # (what, entry id)
        walk = select(AuditEntry).order_by(AuditEntry.seq.is_(None).desc(), AuditEntry.seq, AuditEntry.id)
        if head_seq is not None:
            walk = walk.where(or_(AuditEntry.seq.is_(None), AuditEntry.seq <= head_seq))
        rows = s.scalars(walk.execution_options(yield_per=2000))
        for e in rows:
            if e.seq is None or e.entry_hash is None or e.prev_hash is None:
                if chained_started or e.seq is not None or e.entry_hash is not None or e.prev_hash is not None:
                    broken = ("unchained", e.id)
                    break
                legacy += 1
            elif digest(e) != e.entry_hash:
                broken = ("changed", e.id)
                break
            elif e.prev_hash != (previous[2] if previous is not None else GENESIS):
                broken = ("link", e.id)
                break
            else:
                chained_started = True
                previous = (e.id, e.seq, e.entry_hash)
                checked += 1
            s.expunge(e)
        rows.close()
        if broken is not None:
            return _broken(s, broken, previous, checked, legacy)
        last_id, last_seq, last_hash = previous if previous is not None else (None, 0, GENESIS)
        if head_seq is not None and head_seq > last_seq:
            where = f"after entry #{last_id}" if last_id is not None else "from the start of the chain"
            return Verdict(False, f"Entries were removed from the end of the audit log ({where}): the chain "
                                  f"recorded {head_seq} entries, {last_seq} are there.", checked, legacy,
                           last_id, head_hash or GENESIS)
        if head_seq is not None and head_hash != last_hash:
            return Verdict(False, "The audit log's chain head does not match its last entry "
                                  f"(#{last_id}): one of them was changed.", checked, legacy, last_id, head_hash)
        # Entries beyond the head read first: appended since (then the head has moved past them by
        # now), or added behind the chain's back.
        beyond = s.scalars(select(AuditEntry).where(AuditEntry.seq > (head_seq or 0))
                           .order_by(AuditEntry.seq.desc()).limit(1)).first()
        if beyond is not None:
            now_head = s.scalar(select(AuditChainHead.seq).where(AuditChainHead.id == 1)
                                .execution_options(populate_existing=True))
            if now_head is None or beyond.seq > now_head:
                first = s.scalars(select(AuditEntry).where(AuditEntry.seq > (now_head or 0))
                                  .order_by(AuditEntry.seq, AuditEntry.id).limit(1)).first()
                assert first is not None
                return Verdict(False, "An entry was added to the end of the audit log without its chain: "
                                      f"{_describe(first)}.", checked, legacy, first.id, head_hash or GENESIS)
    sentence = f"The audit log is intact: {checked} chained entries"
    if legacy:
        sentence += f" (and {legacy} from before the chain existed, not covered)"
    sentence += f"; head {last_hash}."
    return Verdict(True, sentence, checked, legacy, None, last_hash)


def _broken(s: Session, broken: tuple[str, int], previous: tuple[int, int, str] | None, checked: int,
            legacy: int) -> Verdict:
    what, entry_id = broken
    e = s.get(AuditEntry, entry_id)
    assert e is not None
    if what == "unchained":
        return Verdict(False, f"The audit log was changed: {_describe(e)} lost its place in the chain.",
                       checked, legacy, e.id)
    if what == "changed":
        return Verdict(False, f"The audit log was changed: {_describe(e)} does not match its hash.",
                       checked, legacy, e.id)
    # A broken link: it points either to an earlier entry (the ones after that were inserted) or
    # to an entry that is gone (removed).
    earlier = s.scalars(select(AuditEntry).where(AuditEntry.entry_hash == e.prev_hash, AuditEntry.id != e.id)
                        .limit(1)).first()
    if earlier is not None and earlier.seq is not None:
        inserted = s.scalars(
            select(AuditEntry).where(AuditEntry.seq.is_not(None), AuditEntry.id != earlier.id,
                                     or_(AuditEntry.seq > earlier.seq,
                                         and_(AuditEntry.seq == earlier.seq, AuditEntry.id > earlier.id)))
            .order_by(AuditEntry.seq, AuditEntry.id).limit(1)).first()
        if inserted is not None and inserted.id != e.id:
            return Verdict(False, f"An entry was inserted into the audit log: {_describe(inserted)}; the entry "
                                  f"after it (#{e.id}) links to #{earlier.id}.", checked, legacy, inserted.id)
    where = f"after entry #{previous[0]} and " if previous is not None else ""
    return Verdict(False, f"Entries were removed from the audit log {where}before {_describe(e)}, which links "
                          "to an entry that is no longer there.", checked, legacy, e.id)
