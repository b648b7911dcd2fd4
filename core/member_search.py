"""Member search: one box, answered from indexes, best match first, with the true total.

What a query finds, in this order (``matched_on`` names the rule; a member appears once, under
the best rule that finds them):

1. ids, exactly: our member / invoice / payment id ("member 12", "invoice #7", bare digits), card
   last four (bare four digits), Stripe ids (cus_, in_, ch_, pi_, sub_, re_, dp_, pm_) and
   invoice numbers;
2. "email": the whole e-mail address;
3. "email starts with": the start of the address;
4. "name starts with": the name's first word starts with the first word typed, and every other
   word typed starts a word of the name;
5. "name": every word typed starts a word of the name ("fernandez" finds "Léa Fernández",
   "brien" finds "Ann O'Brien");
6. "email contains": every word typed starts a word of the address ("stone" finds
   bob.stone@example.org).

Words are compared with case and accents folded. Within a rule, names sort alphabetically. The
total counts every member found (up to ``COUNT_CAP``; beyond it the page says "more than") and
``offset`` pages through them.

The word rules read an index the database keeps on every write (migration 0015): SQLite's FTS5
table ``members_search`` (tokenizer ``unicode61 remove_diacritics 2``) and PostgreSQL's trigram
indexes over ``memberdesk_fold(name)`` and ``email``. Folding differs at the edges: SQLite removes
accents that Unicode decomposes (á, é, ñ, ç, ü...) but keeps ø, ł, æ, ß as letters of their own,
PostgreSQL's ``unaccent`` folds those too (ø → o, ß → ss).

Never raises on any text: hostile input (LIKE wildcards, quotes, FTS5 syntax, control characters,
very long strings) is quoted or dropped, and an empty query finds nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from core.models import Dispute, Invoice, Member, Payment, PaymentMethod, Refund, Subscription

PAGE_SIZE = 50
COUNT_CAP = 10_000
MAX_CHARS = 200
MAX_WORDS = 8
SEARCH_COLUMNS = ["member_id", "email", "name", "country", "stripe_customer_id", "status", "tier", "matched_on"]
TIERS = {1: "email", 2: "email starts with", 3: "name starts with", 4: "name", 5: "email contains"}

_DIGITS = re.compile(r"^\d{1,18}$")
_OUR_ID = re.compile(r"^(member|mem|m|invoice|inv|payment|pay)\s*[#:]?\s*(\d{1,18})$", re.I)
_STRIPE_ID = re.compile(r"^[A-Za-z]{2,5}_[A-Za-z0-9_]{1,250}$")


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: the rows, and how many members the query finds in all."""

    query: str
    rows: pd.DataFrame
    total: int          # members found; a lower bound when ``more_than``
    more_than: bool     # the count stopped at COUNT_CAP
    offset: int
    limit: int

    @property
    def first(self) -> int:
        return self.offset + 1 if len(self.rows) else 0

    @property
    def last(self) -> int:
        return self.offset + len(self.rows)


def clean_query(raw: str | None) -> str:
    """The query as searched: control characters dropped, spaces collapsed, at most MAX_CHARS."""
    kept = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in (raw or "")[: MAX_CHARS * 4])
    return " ".join(kept.split())[:MAX_CHARS]


def _words(query: str) -> list[str]:
    """The words the word rules look for: those with a letter or digit, at most MAX_WORDS."""
    return [w for w in query.split() if any(ch.isalnum() for ch in w)][:MAX_WORDS]


# --- ids ---------------------------------------------------------------------------------------

def _stripe_id_hits(s: Session, value: str) -> list[tuple[int, str]]:
    """(member_id, what matched) for an exact Stripe id in any table that carries one."""
    probes: list[tuple[Any, Any, str]] = [
        (Member.id, Member.stripe_customer_id, "Stripe customer id"),
        (Invoice.member_id, Invoice.stripe_invoice_id, "Stripe invoice id"),
        (Payment.member_id, Payment.stripe_charge_id, "Stripe charge id"),
        (Payment.member_id, Payment.stripe_payment_intent_id, "Stripe payment intent id"),
        (Subscription.member_id, Subscription.stripe_subscription_id, "Stripe subscription id"),
        (Refund.member_id, Refund.stripe_refund_id, "Stripe refund id"),
        (Dispute.member_id, Dispute.stripe_dispute_id, "Stripe dispute id"),
        (PaymentMethod.member_id, PaymentMethod.stripe_payment_method_id, "Stripe payment method id"),
    ]
    hits: list[tuple[int, str]] = []
    for member_col, id_col, label in probes:
        hits += [(mid, label) for (mid,) in s.execute(select(member_col).where(id_col == value).limit(PAGE_SIZE))]
    return hits


def _id_hits(s: Session, query: str) -> tuple[list[tuple[int, str]], bool]:
    """Exact id matches, and whether the query is an id only (then no text search follows)."""
    ours = _OUR_ID.match(query)
    if ours:
        kind, number = ours.group(1).lower(), int(ours.group(2))
        table = {"m": (Member.id, Member.id, "member id"), "i": (Invoice.member_id, Invoice.id, "invoice id"),
                 "p": (Payment.member_id, Payment.id, "payment id")}[kind[0]]
        return [(mid, table[2]) for (mid,) in s.execute(select(table[0]).where(table[1] == number))], True
    if _DIGITS.match(query):
        number = int(query)
        hits = [(mid, "member id") for (mid,) in s.execute(select(Member.id).where(Member.id == number))]
        if len(query) == 4:  # payment_methods keeps every card a member had, detached ones too
            hits += [(mid, "card last four") for (mid,) in s.execute(
                select(PaymentMethod.member_id).where(PaymentMethod.last4 == query).distinct()
                .order_by(PaymentMethod.member_id).limit(COUNT_CAP))]
        hits += [(mid, "invoice id") for (mid,) in s.execute(select(Invoice.member_id).where(Invoice.id == number))]
        hits += [(mid, "payment id") for (mid,) in s.execute(select(Payment.member_id).where(Payment.id == number))]
        return hits, True
    hits = _stripe_id_hits(s, query) if _STRIPE_ID.match(query) else []
    hits += [(mid, "invoice number") for (mid,) in s.execute(
        select(Invoice.member_id).where(Invoice.number == query).limit(PAGE_SIZE))]
    return hits, False


# --- words: one SQL statement per database ------------------------------------------------------

def _fts_phrase(word: str) -> str:
    """An FTS5 prefix phrase: the word quoted (so no FTS5 syntax survives), any word starting so."""
    return '"' + word.replace('"', '""') + '"*'


def _sqlite_hits(email: str, words: list[str]) -> tuple[str, dict[str, Any]]:
    parts = ["SELECT id, 1 AS tier FROM members WHERE email = :email",
             # The unique index on email, read as a range: every address that starts so.
             "SELECT id, 2 FROM members WHERE email >= :lo AND email < :hi"]
    params: dict[str, Any] = {"email": email, "lo": email, "hi": email + "\U0010ffff"}
    if words:
        phrases = [_fts_phrase(w) for w in words]
        params["name_start"] = "name : (^" + " AND ".join(phrases) + ")"
        params["name_any"] = "name : (" + " AND ".join(phrases) + ")"
        params["email_any"] = "email : (" + " AND ".join(phrases) + ")"
        parts += ["SELECT rowid, 3 FROM members_search WHERE members_search MATCH :name_start",
                  "SELECT rowid, 4 FROM members_search WHERE members_search MATCH :name_any",
                  "SELECT rowid, 5 FROM members_search WHERE members_search MATCH :email_any"]
    return " UNION ALL ".join(parts), params


def _pg_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _pg_regex(word: str) -> str:
    # In PostgreSQL's regular expressions a backslash before a non-alphanumeric is that character.
    return "".join(ch if ch.isalnum() else "\\" + ch for ch in word)


def _postgres_hits(email: str, words: list[str]) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"email": email, "prefix": _pg_like(email) + "%"}
    parts = ["SELECT id, 1 AS tier FROM members WHERE email = :email",
             "SELECT id, 2 FROM members WHERE email LIKE :prefix"]
    if words:
        name_any, email_any = [], []
        for i, w in enumerate(words):
            # LIKE '%w%' is what the trigram index answers; the expression then keeps word starts.
            params[f"c{i}"], params[f"w{i}"] = f"%{_pg_like(w)}%", f"(^|[^[:alnum:]]){_pg_regex(w)}"
            name_any.append(f"memberdesk_fold(name) LIKE :c{i} AND memberdesk_fold(name) ~ :w{i}")
            email_any.append(f"email LIKE :c{i} AND email ~ :w{i}")
        params["start"] = _pg_like(words[0]) + "%"
        parts += [f"SELECT id, 3 FROM members WHERE memberdesk_fold(name) LIKE :start AND {' AND '.join(name_any)}",
                  f"SELECT id, 4 FROM members WHERE {' AND '.join(name_any)}",
                  f"SELECT id, 5 FROM members WHERE {' AND '.join(email_any)}"]
    return " UNION ALL ".join(parts), params


def _word_query(s: Session, query: str) -> tuple[str, dict[str, Any]]:
    email = query.lower()
    if s.get_bind().dialect.name == "sqlite":
        return _sqlite_hits(email, _words(query))
    folded = s.execute(text("SELECT memberdesk_fold(:q)"), {"q": query}).scalar_one()
    return _postgres_hits(email, _words(folded))


def _word_page(s: Session, query: str, exclude: list[int], offset: int, limit: int) -> tuple[list[tuple[int, int]],
                                                                                                int, bool]:
    hits, params = _word_query(s, query)
    best = f"SELECT id, MIN(tier) AS tier FROM ({hits}) hits GROUP BY id"
    if exclude:
        best += f" HAVING id NOT IN ({', '.join(str(int(i)) for i in exclude)})"
    page = s.execute(text(f"SELECT b.id, b.tier FROM ({best}) b JOIN members m ON m.id = b.id "
                          "ORDER BY b.tier, m.name, m.id LIMIT :limit OFFSET :offset"),
                     {**params, "limit": limit, "offset": offset}).all()
    if offset == 0 and len(page) < limit:
        return [(r[0], r[1]) for r in page], len(page), False
    total = s.execute(text(f"SELECT COUNT(*) FROM (SELECT id FROM ({best}) b LIMIT :cap) counted"),
                      {**params, "cap": COUNT_CAP + 1}).scalar_one()
    return [(r[0], r[1]) for r in page], min(total, COUNT_CAP), total > COUNT_CAP


# --- the page ------------------------------------------------------------------------------------

def search_page(engine: Engine, raw: str | None, *, offset: int = 0, limit: int = PAGE_SIZE) -> SearchPage:
    """The members ``raw`` finds: ``limit`` of them from ``offset``, best first, and the total."""
    from core.members import latest_subscriptions  # the member read model's "status now"

    query = clean_query(raw)
    offset, limit = max(0, int(offset)), max(1, min(int(limit), 500))
    if not query:
        return SearchPage(query, pd.DataFrame(columns=SEARCH_COLUMNS), 0, False, offset, limit)
    with Session(engine) as s:
        found: dict[int, str] = {}
        hits, id_only = _id_hits(s, query)
        for mid, label in hits:
            found.setdefault(mid, label)
        ids = list(found)
        chosen = [(mid, found[mid]) for mid in ids[offset:offset + limit]]
        total, more = len(ids), False
        if not id_only:
            word_offset = max(0, offset - len(ids))
            word_rows, word_total, more = _word_page(s, query, ids, word_offset, limit - len(chosen))
            chosen += [(mid, TIERS[tier]) for mid, tier in word_rows]
            total += word_total
        if not chosen:
            return SearchPage(query, pd.DataFrame(columns=SEARCH_COLUMNS), total, more, offset, limit)
        members = {m.id: m for m in s.scalars(select(Member).where(Member.id.in_([mid for mid, _ in chosen])))}
        latest = latest_subscriptions(s, list(members))
    rows = []
    for mid, label in chosen:
        m, sub = members[mid], latest.get(mid)
        rows.append({"member_id": m.id, "email": m.email, "name": m.name, "country": m.country,
                     "stripe_customer_id": m.stripe_customer_id,
                     "status": sub["status"] if sub else "no membership",
                     "tier": sub["tier"] if sub else "free", "matched_on": label})
    return SearchPage(query, pd.DataFrame(rows, columns=SEARCH_COLUMNS), total, more, offset, limit)


__all__ = ["COUNT_CAP", "PAGE_SIZE", "SEARCH_COLUMNS", "SearchPage", "clean_query", "search_page"]
