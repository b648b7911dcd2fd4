"""Member search: one box, answered from indexes, best match first, with the true total.

What a query finds, in this order (``matched_on`` names the rule; a member appears once, under
the best rule that finds them):

1. ids, exactly: our member / invoice / payment id ("member 12", "invoice #7", bare digits), card
   last four (bare four digits), Stripe ids (cus_, in_, ch_, pi_, sub_, re_, dp_, pm_) and
   invoice numbers;
2. "email": the whole address (a query with an @ is an address: rules 2-3 only);
3. "email starts with": the address starts with the query;
4. "name starts with": the name's first word is (or, typed alone, starts with) the first word
   typed, and the other words typed are words of the name;
5. "name": the words typed are words of the name ("fernandez" finds "Léa Fernández", "brien"
   finds "Ann O'Brien");
6. "name or email": the words typed are words of the name or of the address ("stone" finds
   bob.stone@example.org).

Words are runs of letters and digits (anything else separates them), compared with case and
accents folded; the words before the last are whole words and the last a start ("lea mor" finds
"Léa Moreau", "le moreau" does not). When at most ``SORT_LIMIT`` members are found, each rule's members sort by name;
beyond, in the order the index gives them (SQLite: member id; PostgreSQL: for one word, word
then member id; for several, where the rows are stored), as sorting tens of thousands of names
costs more than the search. The total
counts every member found (up to ``COUNT_CAP``; beyond it the page says "more than") and
``offset`` pages through them.

The word rules read indexes the database keeps on every write: SQLite's FTS5 table
``members_search`` (migration 0015, tokenizer ``unicode61 remove_diacritics 2``); PostgreSQL's
generated column ``members.search_words`` (words of ``memberdesk_fold(name)`` and of the e-mail)
with a GIN index for several words (0015) and, for one word, the table ``member_words`` of the
same words in a B-tree read from the index alone (0024). Folding differs at the edges: SQLite removes
accents that Unicode decomposes (á, é, ñ, ç, ü...) but keeps ø, ł, æ, ß as letters of their own,
PostgreSQL's ``unaccent`` folds those too (ø → o, ß → ss).

Never raises on any text: hostile input (LIKE wildcards, quotes, FTS5 syntax, control characters,
very long strings) is split into words of letters and digits, and an empty query finds nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from core.models import Dispute, Invoice, Member, Payment, PaymentMethod, Refund, Subscription

PAGE_SIZE = 50
COUNT_CAP = 1_000   # beyond this many, "more than 1,000": a list to narrow, not to page through
SORT_LIMIT = 500   # up to this many found, each rule's members sort by name; beyond, by member id
MAX_CHARS = 200
MAX_WORDS = 8
SEARCH_COLUMNS = ["member_id", "email", "name", "country", "stripe_customer_id", "status", "tier", "matched_on"]
TIERS = {1: "email", 2: "email starts with", 3: "name starts with", 4: "name", 5: "name or email"}

_DIGITS = re.compile(r"^\d{1,18}$")
# "member 12", "inv:7", and "#1212", as the pages write a member's id.
_OUR_ID = re.compile(r"^(member|mem|m|invoice|inv|payment|pay|#)\s*[#:]?\s*(\d{1,18})$", re.I)
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
    """The query as searched: control characters as spaces, invisible format characters dropped
    (the word joiner our pages put into addresses came along when one was copied from a result,
    and "jo\u2060@example.com" searched as two words), spaces collapsed, at most MAX_CHARS."""
    kept = "".join(" " if unicodedata.category(ch)[0] == "C" and unicodedata.category(ch) != "Cf" else ch
                   for ch in (raw or "")[: MAX_CHARS * 4] if unicodedata.category(ch) != "Cf")
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
        table = {"m": (Member.id, Member.id, "member id"), "#": (Member.id, Member.id, "member id"),
                 "i": (Invoice.member_id, Invoice.id, "invoice id"),
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
    # Stripe writes invoice numbers in capitals ("D0001211-0032"); a person types them as they come.
    hits += [(mid, "invoice number") for (mid,) in s.execute(
        select(Invoice.member_id).where(Invoice.number.in_({query, query.upper()})).limit(PAGE_SIZE))]
    return hits, False


# --- words and e-mail: the rules, cheapest first, each read in id order with a LIMIT -------------

def tokens(query: str) -> list[str]:
    """The words the word rules look for, split as SQLite's tokenizer splits (letters and digits;
    anything else separates), at most MAX_WORDS."""
    return [t for t in _SEPARATORS.split(unicodedata.normalize("NFC", query)) if t][:MAX_WORDS]


_SEPARATORS = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class _Rules:
    """One query's rules for one database: ``fetch(tier, n)`` gives up to n member ids of a rule,
    ``found_ids(cap)`` the members all rules find together (at most cap)."""

    session: Session
    tiers: list[tuple[int, str, dict[str, Any]]]   # (tier, SELECT id ... LIMIT :n, params)
    found: str                                     # SELECT id <of the members any rule finds>
    params: dict[str, Any]
    # ``found`` may give a member more than once (PostgreSQL's word table: two words of theirs
    # start as typed); it is then read in index order, a LIMIT at a time, and never all at once.
    repeats: bool = False
    # PostgreSQL: every rule but the last as a condition on a member's row (``members``), in rule
    # order, with its parameters. When few members are found, their rules are then read in one
    # pass over their rows by primary key, instead of each rule's index again: GIN reads every
    # typed word's whole list for each rule, whatever its LIMIT.
    conditions: list[tuple[int, str]] = field(default_factory=list)
    condition_params: dict[str, Any] = field(default_factory=dict)

    def fetch(self, sql: str, params: dict[str, Any], n: int) -> list[int]:
        """Up to n members of a rule, each once, reading further while repeats left it short."""
        want = n
        while True:
            ids = [r[0] for r in self.session.execute(text(sql), {**params, "n": want})]
            once = list(dict.fromkeys(ids))
            if len(once) >= n or len(ids) < want:
                return once[:n]
            want += n

    def found_ids(self, cap: int) -> list[int]:
        """Up to ``cap`` of the members the rules find together, each once, in index order."""
        sql = f"{self.found} LIMIT :k"
        k = cap
        while True:
            ids = [r[0] for r in self.session.execute(text(sql), {**self.params, "k": k})]
            once = list(dict.fromkeys(ids))
            if not self.repeats or len(ids) < k or len(once) >= cap:
                return once[:cap]
            k += cap

    def among(self, ids: list[int]) -> int:
        """How many of ``ids`` (a short list of whole numbers) the rules find."""
        if not ids:
            return 0
        sql = f"SELECT COUNT(DISTINCT id) FROM ({self.found}) c WHERE c.id IN ({', '.join(str(int(i)) for i in ids)})"
        n: int = self.session.execute(text(sql), self.params).scalar_one()
        return n

    def best_rules(self, ids: list[int]) -> dict[int, int]:
        """The best rule that finds each of ``ids`` (members ``found`` gave), from ``conditions``."""
        if not ids:
            return {}
        last = self.tiers[-1][0]
        case = " ".join(f"WHEN {cond} THEN {tier}" for tier, cond in self.conditions)
        sql = (f"SELECT id, CASE {case} ELSE {last} END FROM members "
               f"WHERE id IN ({', '.join(str(int(i)) for i in ids)})")
        return {int(i): int(t) for i, t in self.session.execute(text(sql), self.condition_params)}


def _email_rules(s: Session, email: str, *, pattern_sql: str, pattern: dict[str, Any]) -> _Rules:
    """Rules 1-2 for a query with an @ in it: the address, then the addresses that start so."""
    exact = (1, "SELECT id FROM members WHERE email = :email LIMIT :n", {"email": email})
    start = (2, f"SELECT id FROM members WHERE {pattern_sql} ORDER BY email LIMIT :n", pattern)
    return _Rules(s, [exact, start], f"SELECT id FROM members WHERE {pattern_sql}", pattern)


def _fts_term(token: str, *, last: bool) -> str:
    # Words before the last are whole words, the last one a start (still being typed): a prefix
    # reads every word that starts so (30,000 members for a common name at a million), a whole
    # word only its own, and the index can then skip through the longer lists.
    quoted = '"' + token.replace('"', '""') + '"'
    return quoted + "*" if last else quoted


def _sqlite_rules(s: Session, query: str) -> _Rules | None:
    email = query.lower()
    pattern_sql = "email >= :lo AND email < :hi"   # the unique index on email, read as a range
    pattern = {"lo": email, "hi": email + "\U0010ffff"}
    if "@" in query:
        return _email_rules(s, email, pattern_sql=pattern_sql, pattern=pattern)
    words = tokens(query)
    if not words:
        return None
    terms = [_fts_term(t, last=i == len(words) - 1) for i, t in enumerate(words)]
    every = " AND ".join(terms)
    first = "first_word : " + terms[0] + (" AND name : (" + " AND ".join(terms[1:]) + ")" if terms[1:] else "")
    fts = "SELECT rowid FROM members_search WHERE members_search MATCH :q ORDER BY rowid LIMIT :n"
    tiers = [(3, fts, {"q": first}), (4, fts, {"q": f"name : ({every})"}), (5, fts, {"q": every})]
    if " " not in query:
        tiers.insert(0, (2, f"SELECT id FROM members WHERE {pattern_sql} ORDER BY email LIMIT :n", pattern))
    # Every address that starts with the query also has each of its words (rule 5): one count.
    return _Rules(s, tiers, "SELECT rowid AS id FROM members_search WHERE members_search MATCH :q", {"q": every})


def _pg_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _tsquery(words: list[str], marks: list[str], last_words: list[str] | None = None) -> str:
    """A ``tsquery``: each word (letters and digits only, so no query syntax) led by the mark of
    where it must stand (migration 0015: ^ first word, ~ name, @ e-mail; "~@" either), a prefix
    or a whole word as in ``_fts_term``. ``last_words``: the whole words the last (a start) is
    read as, instead of a prefix."""
    last = len(words) - 1
    terms = []
    for i, (word, where) in enumerate(zip(words, marks, strict=True)):
        if i == last and last_words:
            terms.append("(" + " | ".join(f"'{m}{w}'" for w in last_words for m in where) + ")")
            continue
        star = ":*" if i == last else ""
        terms.append("(" + " | ".join(f"'{m}{word}'{star}" for m in where) + ")")
    return " & ".join(terms)


# A start typed that begins at most this many distinct words is read as those words. GIN reads a
# prefix by gathering every matching entry's whole list into a bitmap before it can intersect
# anything: at a million members "lea moreau" took 17 ms as a prefix and 5.6 ms as whole words.
_STARTS_AS_WORDS = 16
_WORDS_STARTING = """
WITH RECURSIVE w(word) AS (
    (SELECT word FROM member_words WHERE word LIKE :start ORDER BY word LIMIT 1)
  UNION ALL
    SELECT (SELECT m.word FROM member_words m WHERE m.word LIKE :start AND m.word > w.word ORDER BY m.word LIMIT 1)
    FROM w WHERE w.word IS NOT NULL
)
SELECT word FROM w WHERE word IS NOT NULL LIMIT :cap"""


def _words_starting(s: Session, start: str) -> list[str] | None:
    """The distinct words of members' names and e-mails that start with ``start`` (``member_words``'
    * rows, one index probe per word), or None when there are more than ``_STARTS_AS_WORDS`` or
    none (a prefix nobody's word has costs GIN nothing)."""
    rows = s.execute(text(_WORDS_STARTING), {"start": _pg_like("*" + start) + "%", "cap": _STARTS_AS_WORDS + 1})
    words = [w[1:] for (w,) in rows]
    if not words or len(words) > _STARTS_AS_WORDS or any("'" in w or "\\" in w for w in words):
        return None
    return words


def _postgres_rules(s: Session, query: str) -> _Rules | None:
    email = query.lower()
    pattern_sql = "email LIKE :prefix"   # ix_members_email_pattern (text_pattern_ops): a range scan
    pattern = {"prefix": _pg_like(email) + "%"}
    if "@" in query:
        return _email_rules(s, email, pattern_sql=pattern_sql, pattern=pattern)
    folded = s.execute(text("SELECT memberdesk_fold(:q)"), {"q": unicodedata.normalize("NFC", query)}).scalar_one()
    words = tokens(folded)
    if not words:
        return None
    # The planner guesses a share of rows for a start of a word and may then read the whole
    # table, which is what a rule that finds nobody costs: the indexes always answer these.
    s.execute(text("SET LOCAL enable_seqscan = off"))
    rules = _one_word_rules(s, words[0]) if len(words) == 1 else _several_words_rules(s, words)
    if " " not in query:
        rules.tiers.insert(0, (2, f"SELECT id FROM members WHERE {pattern_sql} ORDER BY email LIMIT :n", pattern))
        rules.conditions.insert(0, (2, "email LIKE :c2"))
        rules.condition_params["c2"] = pattern["prefix"]
    return rules


def _word_conditions(rules: _Rules, queries: dict[int, str]) -> _Rules:
    """``rules`` with the conditions of rules 3 and 4: the member's words match a ``tsquery``."""
    rules.conditions.extend((tier, f"search_words @@ CAST(:c{tier} AS tsquery)") for tier in queries)
    rules.condition_params.update({f"c{tier}": q for tier, q in queries.items()})
    return rules


def _one_word_rules(s: Session, word: str) -> _Rules:
    """One word (still being typed: a start): every rule is one range of ``member_words``
    (migration 0024: ^ first word, ~ name, * name or e-mail), read from the index alone and
    stopped at its LIMIT, where the GIN index would visit every member a common name finds."""
    def starts(mark: str) -> tuple[str, dict[str, Any]]:
        # The column is collated "C": PostgreSQL reads LIKE 'x%' as the range of words starting
        # so (and estimates it from the statistics), whatever the database's encoding.
        return ("SELECT member_id AS id FROM member_words WHERE word LIKE :start", {"start": _pg_like(mark + word) + "%"})

    # In index order, said: read further after a short page (``_Rules.fetch``) and the next page
    # (``offset``) count on the same order, which a bitmap scan, chosen on other statistics,
    # would not keep.
    ordered = " ORDER BY word, member_id LIMIT :n"
    tiers = [(tier, sql + ordered, params) for tier, (sql, params) in ((3, starts("^")), (4, starts("~")))]
    every, params = starts("*")
    tiers.append((5, every + ordered, params))
    # The same rules on a member's own words: the table holds exactly the lexemes (^, ~, and * for ~ and @).
    return _word_conditions(_Rules(s, tiers, every, params, repeats=True),
                            {3: _tsquery([word], ["^"]), 4: _tsquery([word], ["~"])})


def _several_words_rules(s: Session, words: list[str]) -> _Rules:
    """Several words: the GIN index over ``search_words`` (migration 0015), whose bitmaps
    intersect the words' lists (words before the last are whole words, so the lists are short;
    the last, a start, is read as the few whole words it starts when ``member_words`` lists them)."""
    n = len(words)
    rule = "SELECT id FROM members WHERE search_words @@ CAST(:q AS tsquery) LIMIT :n"
    last = _words_starting(s, words[-1])
    queries = {3: _tsquery(words, ["^"] + ["~"] * (n - 1), last), 4: _tsquery(words, ["~"] * n, last),
               5: _tsquery(words, ["~@"] * n, last)}
    tiers = [(tier, rule, {"q": q}) for tier, q in queries.items()]
    return _word_conditions(_Rules(s, tiers, "SELECT id FROM members WHERE search_words @@ CAST(:q AS tsquery)",
                                   tiers[-1][2]), {3: queries[3], 4: queries[4]})


def _word_page(s: Session, query: str, exclude: list[int], offset: int, limit: int) -> tuple[list[tuple[int, int]],
                                                                                                int, bool]:
    """(member id, rule) of the page's rows from the e-mail and word rules, their total, and
    whether the total stopped at COUNT_CAP."""
    rules = _sqlite_rules(s, query) if s.get_bind().dialect.name == "sqlite" else _postgres_rules(s, query)
    if rules is None:
        return [], 0, False
    ids = rules.found_ids(COUNT_CAP + 1)
    counted = len(ids)
    # Below the cap ``ids`` is every member found: the ones the id rules listed are known here.
    listed = len(set(exclude) & set(ids)) if counted <= COUNT_CAP else rules.among(exclude)
    total = min(counted, COUNT_CAP) - listed
    sort_by_name = counted <= SORT_LIMIT
    need = counted if sort_by_name else min(offset + limit, COUNT_CAP)
    seen: set[int] = set(exclude)
    found: list[tuple[int, int]] = []
    if sort_by_name and rules.conditions:
        best = rules.best_rules([m for m in ids if m not in seen])
        found = [(m, best[m]) for m in ids if m in best]
    else:
        for tier, sql, params in rules.tiers:
            if len(found) >= need:
                break
            for mid in rules.fetch(sql, params, need - len(found) + len(seen)):
                if mid not in seen:
                    seen.add(mid)
                    found.append((mid, tier))
    if sort_by_name and found:
        names = dict(s.execute(select(Member.id, Member.name).where(Member.id.in_([m for m, _ in found]))).all())
        found.sort(key=lambda hit: (hit[1], names.get(hit[0], ""), hit[0]))
        total = len(found)
    return found[offset:offset + limit], total, counted > COUNT_CAP


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
        # The columns the list shows: a whole member would decrypt their phone and address too.
        shown = (Member.id, Member.email, Member.name, Member.country, Member.stripe_customer_id)
        members = {m.id: m for m in s.execute(select(*shown).where(Member.id.in_([mid for mid, _ in chosen])))}
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
