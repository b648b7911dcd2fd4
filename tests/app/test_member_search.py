"""Member search on SQLite and PostgreSQL: accents and case folded, prefixes, the best match first,
the true total with pages, ids, hostile input, and an index kept right by every write path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.member_search import COUNT_CAP, PAGE_SIZE, SORT_LIMIT, search_page
from core.members import search
from core.models import Member
from core.stripe_store import apply
from demo import clear_demo_tables, load_demo
from tests.support.factories import at, make_member, make_payment, make_price, make_subscription, make_tier

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def ids(engine: Engine, text: str, **kw: int) -> list[int]:
    return [int(x) for x in search_page(engine, text, **kw).rows["member_id"]]


@pytest.fixture
def people(session: Session) -> dict[str, int]:
    made = {
        "lea": make_member(session, name="Léa Fernández", email="lea.f@example.com"),
        "jose": make_member(session, name="JOSÉ FERNÁNDEZ", email="jf@example.net"),
        "plain": make_member(session, name="Ana Fernandez", email="ana@example.org"),
        "obrien": make_member(session, name="Ann O'Brien-Smith", email="ann_ob@example.com"),
        "francois": make_member(session, name="François Çelik", email="fc@example.com"),
        "pct": make_member(session, name="Percy 100% Sure", email="percy@example.com"),
    }
    session.commit()
    return {k: m.id for k, m in made.items()}


class TestFolding:
    @pytest.mark.parametrize("text", ["fernandez", "FERNANDEZ", "Fernández", "fernÁndez", "fern", "  fern  "])
    def test_accents_and_case_fold_both_ways(self, engine, people, text):
        assert set(ids(engine, text)) == {people["lea"], people["jose"], people["plain"]}

    def test_cedilla_and_several_words(self, engine, people):
        assert ids(engine, "francois celik") == [people["francois"]]
        assert ids(engine, "celik franç") == [people["francois"]]
        assert ids(engine, "lea fernandez") == [people["lea"]]

    def test_a_word_inside_a_hyphenated_or_quoted_name(self, engine, people):
        assert ids(engine, "brien") == [people["obrien"]]
        assert ids(engine, "smith") == [people["obrien"]]
        assert ids(engine, "o'brien") == [people["obrien"]]

    def test_the_middle_of_a_word_is_not_a_match(self, engine, people):
        assert ids(engine, "nandez") == []

    def test_the_last_word_may_be_a_start_the_others_are_whole_words(self, engine, people):
        assert ids(engine, "lea fern") == [people["lea"]]
        assert ids(engine, "le fernandez") == []


class TestRanking:
    def test_best_match_first(self, engine, session):
        email_exact = make_member(session, name="Anne Zed", email="moreau@example.com")
        email_start = make_member(session, name="Xavier Quill", email="moreau.x@example.com")
        name_start = make_member(session, name="Moreau Alain", email="a1@example.com")
        name_word_b = make_member(session, name="Zoé Moreau", email="z1@example.com")
        name_word_a = make_member(session, name="Bea Moreau", email="b1@example.com")
        email_word = make_member(session, name="Léa Dupont", email="lea.moreau@example.org")
        make_member(session, name="Unrelated Person", email="nobody@example.com")
        session.commit()
        page = search_page(engine, "moreau@example.com")
        assert list(page.rows["member_id"])[0] == email_exact.id
        assert page.rows.iloc[0]["matched_on"] == "email"
        page = search_page(engine, "Moreau")
        assert list(page.rows["member_id"]) == [email_exact.id, email_start.id, name_start.id, name_word_a.id,
                                                name_word_b.id, email_word.id]
        assert list(page.rows["matched_on"]) == ["email starts with", "email starts with", "name starts with",
                                                 "name", "name", "name or email"]
        assert page.total == 6 and not page.more_than


class TestTotals:
    def test_the_true_total_and_every_page(self, engine, session):
        for i in range(150):
            make_member(session, name=f"Person{i:03d} Moreau", email=f"p{i}@example.com")
        wanted = make_member(session, name="Zacharie Moreau", email="zach@example.com")
        make_member(session, name="Someone Else", email="else@example.com")
        session.commit()
        first = search_page(engine, "moreau")
        assert (first.total, first.more_than, len(first.rows), first.first, first.last) == (151, False, 50, 1, 50)
        seen = []
        for offset in range(0, 200, PAGE_SIZE):
            page = search_page(engine, "moreau", offset=offset)
            assert page.total == 151
            seen += list(page.rows["member_id"])
        assert len(seen) == len(set(seen)) == 151
        assert seen[-1] == wanted.id  # alphabetical within the rule: Zacharie comes last
        assert ids(engine, "zacharie moreau") == [wanted.id]  # narrowing finds the one wanted
        assert search_page(engine, "moreau", offset=1000).rows.empty

    def test_beyond_the_cap_it_says_more_than(self, engine, session):
        session.add_all([Member(email=f"m{i}@example.com", name=f"Ann{i:04d} Moreau", created_at=at("2025-01-01 00:00"))
                         for i in range(COUNT_CAP + 10)])
        session.commit()
        page = search_page(engine, "moreau")
        assert (page.total, page.more_than, len(page.rows)) == (COUNT_CAP, True, PAGE_SIZE)
        last = search_page(engine, "moreau", offset=COUNT_CAP - PAGE_SIZE)
        assert len(last.rows) == PAGE_SIZE and not set(last.rows["member_id"]) & set(page.rows["member_id"])


class TestIds:
    def test_every_id_kind(self, engine, session):
        price = make_price(session, tier=make_tier(session))
        ann = make_member(session, name="Ann Lee", email="ann@example.com", stripe_customer_id="cus_ANN1")
        sub = make_subscription(session, member=ann, price=price)
        pay = make_payment(session, member=ann, created_at=at("2026-01-02 00:00"))
        other = make_member(session, name="Other One", email="other@example.com")
        session.commit()
        for text, label in [(str(ann.id), "member id"), (f"member #{ann.id}", "member id"), (f"#{ann.id}", "member id"),
                            ("cus_ANN1", "Stripe customer id"), (sub.stripe_subscription_id, "Stripe subscription id"),
                            (pay.stripe_charge_id, "Stripe charge id"), (f"payment {pay.id}", "payment id")]:
            page = search_page(engine, text)
            assert page.rows.iloc[0]["member_id"] == ann.id, text
            assert page.rows.iloc[0]["matched_on"] == label, text
        assert other.id not in ids(engine, "cus_ANN1")
        # An address copied from a result carries the invisible word joiner the page puts in it.
        assert ids(engine, "ann\u2060@example.com") == [ann.id]


HOSTILE = ["%", "_", "%%", "a%", "%a", "\\", "'", '"', "''", '"a', "a\"b", "*", "^", "-", "+", "(", ")", "NEAR(a b)",
           "name:", "email : x", "AND", "OR", "NOT", "a OR b", "{name}: x", "\x00", "a\x00b", "\u200b", "\U0001F600",
           "%' OR 1=1 --", "'; DROP TABLE members; --", "[a-z]", ".*", "(^|x)", "\\m", "a" * 5000, "é" * 300,
           " ".join(["word"] * 200), "ünïcödé ñ", "🙂 smile", "\t\n\r"]


class TestHostileInput:
    @pytest.mark.parametrize("text", HOSTILE)
    def test_never_raises_and_wildcards_match_no_more_than_their_letters(self, engine, people, text):
        page = search_page(engine, text)
        assert page.total <= 2  # "a%" may find the names with a word starting "a"; never everyone
        assert len(search(engine, text)) == len(page.rows)

    def test_a_percent_sign_is_a_character(self, engine, people):
        assert ids(engine, "100%") == [people["pct"]]


class TestIndexKeptOnEveryWrite:
    def test_rename_and_delete(self, engine, session, people):
        member = session.get(Member, people["plain"])
        member.name = "Ana Ñúñez"
        session.commit()
        assert ids(engine, "nunez") == [people["plain"]]
        assert people["plain"] not in ids(engine, "fernandez")
        session.delete(session.get(Member, people["pct"]))
        session.commit()
        assert ids(engine, "percy") == []

    def test_the_sync_writes_and_rewrites(self, engine, session):
        customer = {"id": "cus_SYNC1", "object": "customer", "email": "zoe@example.com", "name": "Zoë Müller",
                    "created": 1767225600, "metadata": {}, "invoice_settings": {}}
        apply(session, customer, state_at=at("2026-01-02 00:00"))
        session.commit()
        assert search_page(engine, "muller").rows.iloc[0]["stripe_customer_id"] == "cus_SYNC1"
        apply(session, {**customer, "name": "Zoë Schäfer"}, state_at=at("2026-01-03 00:00"))
        session.commit()
        assert search_page(engine, "schafer").total == 1
        assert search_page(engine, "muller").total == 0

    @pytest.mark.parametrize("defer_indexes", [True, False])
    def test_the_demo_loader(self, engine, defer_indexes):
        load_demo(engine, members=40, seed=4, now=NOW, chunk=20, defer_indexes=defer_indexes)
        with Session(engine) as s:
            members = s.execute(select(Member.id, Member.name).order_by(Member.id)).all()
        for mid, name in members[:: max(1, len(members) // 6)]:
            last = name.split()[-1]
            page = search_page(engine, last, limit=500)
            assert mid in set(page.rows["member_id"]), name
        clear_demo_tables(engine)
        assert search_page(engine, members[0][1].split()[-1]).total == 0


class TestMembersPage:
    def test_the_page_says_the_true_total_and_pages(self, database_url, engine, session):
        from tests.support.apptest import app_test, texts
        from tests.support.worlds import create_staff

        for i in range(60):
            make_member(session, name=f"Person{i:02d} Moreau", email=f"p{i}@example.com")
        session.commit()
        create_staff(engine)
        at = app_test(database_url, role="support")
        at.run()
        at.switch_page("../pages/members.py").run()
        at.text_input(key="member_search").input("MOREAU").run()
        assert not at.exception
        shown = texts(at)
        assert "60 members match “MOREAU”: showing 1–50, best matches first." in shown
        assert len(at.dataframe[0].value) == 50
        at.button(key="search_next").click().run()
        assert "showing 51–60" in texts(at) and len(at.dataframe[0].value) == 10
        assert at.dataframe[0].value["Name"].tolist()[-1] == "Person59 Moreau"
        at.text_input(key="member_search").input("person07 moreau").run()
        assert "1 member matches “person07 moreau”." in texts(at)


class TestPostgresWordTable:
    """PostgreSQL reads ``member_words`` (migration 0024) for one word; it must hold exactly the
    words of ``members.search_words`` after every kind of write, and find what PostgreSQL's own
    full-text match of those words finds."""

    @pytest.fixture(autouse=True)
    def _postgres_only(self, engine):
        if engine.dialect.name != "postgresql":
            pytest.skip("the word table is PostgreSQL's")

    @staticmethod
    def _words_of_members(engine) -> tuple[set, set]:
        """The table's rows, and what they should be from each member's lexemes: ^ and ~ as they
        are, ~ and @ also as * (a word of the name or the e-mail)."""
        from sqlalchemy import text

        with engine.connect() as conn:
            table = set(conn.execute(text("SELECT word, member_id FROM member_words")).all())
            lexemes = conn.execute(text("SELECT w, id FROM members, unnest(tsvector_to_array(search_words)) w")).all()
        expected = {(w, i) for w, i in lexemes if w[0] in "^~"} | {("*" + w[1:], i) for w, i in lexemes if w[0] in "~@"}
        return table, expected

    def test_the_table_holds_the_words_of_every_member_after_every_write(self, engine, session, people):
        from sqlalchemy import text

        lea = session.get(Member, people["lea"])
        lea.email = "lea.moreau@example.fr"
        lea.name = "Léa Moreau-Fernández"
        session.delete(session.get(Member, people["pct"]))
        session.commit()
        with engine.begin() as conn:  # a hand-run fix, outside the ORM
            conn.execute(text("UPDATE members SET name = upper(name) WHERE id = :id"), {"id": people["jose"]})
            conn.execute(text("UPDATE members SET country = 'FR' WHERE id = :id"), {"id": people["plain"]})
        table, lexemes = self._words_of_members(engine)
        assert table == lexemes and {("~moreau", people["lea"]), ("*moreau", people["lea"])} <= table
        assert not {w for w in table if w[1] == people["pct"]}
        load_demo(engine, members=30, seed=5, now=NOW, chunk=10, defer_indexes=True)
        table, lexemes = self._words_of_members(engine)
        assert table == lexemes and len(table) > 30 * 4
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE members CASCADE"))
        assert self._words_of_members(engine) == (set(), set())

    def test_finds_what_full_text_matching_finds(self, engine, session, people):
        from sqlalchemy import text

        load_demo(engine, members=60, seed=6, now=NOW, chunk=30, defer_indexes=False)
        with engine.connect() as conn:
            names = [n for (n,) in conn.execute(text("SELECT name FROM members ORDER BY id"))]
        queries = {"fern", "fernandez", "lea fern", "ann", "a", "m", "example", "o brien"}
        queries |= {n.split()[-1][:3] for n in names[::7]} | {" ".join(n.split()[:2]) for n in names[::11]}
        for q in sorted(queries):
            self._check_against_full_text(engine, q)

    def test_a_last_word_that_starts_many_words_finds_what_full_text_matching_finds(self, engine, session):
        # "ann zq" starts 20 distinct words (read as a prefix), "ann zqb" a few (read as those words).
        for i in range(20):
            make_member(session, name=f"Ann Zq{chr(97 + i)}{chr(97 + i)}", email=f"ann{i}@example.com")
            make_member(session, name=f"Bob Zq{chr(97 + i)}x", email=f"bob.zq{chr(97 + i)}y@example.com")
        session.commit()
        for q in ("ann zq", "ann zqb", "ann zqbb", "zqb ann", "ann zqz", "bob zqc", "ann ann0", "zqcx bob"):
            self._check_against_full_text(engine, q)

    def _check_against_full_text(self, engine, q: str) -> None:
        from sqlalchemy import text

        folded = search_page(engine, q, limit=500)
        with engine.connect() as conn:
            words = [w for w in conn.execute(text("SELECT memberdesk_fold(:q)"), {"q": q}).scalar_one()
                     .replace("'", " ").replace("-", " ").split() if w]
            tsq = " & ".join(f"('~{w}'{':*' if i == len(words) - 1 else ''} | '@{w}'{':*' if i == len(words) - 1 else ''})"
                             for i, w in enumerate(words))
            expected = {i for (i,) in conn.execute(
                text("SELECT id FROM members WHERE search_words @@ CAST(:q AS tsquery)"), {"q": tsq})}
        found = [int(x) for x in folded.rows["member_id"]]
        assert len(found) == len(set(found)), q  # each member once, though two words may start so
        assert set(found) == expected and folded.total == len(expected), q
        assert dict(zip(found, folded.rows["matched_on"], strict=True)) == self._best_rules(engine, q, words, found), q

    @staticmethod
    def _best_rules(engine, q: str, words: list[str], found: list[int]) -> dict[int, str]:
        """Each member's best rule, worked out in Python from their e-mail and lexemes (^ first
        word, ~ name, @ e-mail): the earlier words whole, the last a start."""
        from sqlalchemy import text

        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, email, tsvector_to_array(search_words) FROM members WHERE id = ANY(:ids)"),
                                {"ids": found}).all()

        def has(lexemes: list[str], marks: str, i: int) -> bool:
            last = i == len(words) - 1
            return any(x[0] in marks and (x[1:].startswith(words[i]) if last else x[1:] == words[i]) for x in lexemes)

        out = {}
        for mid, email, lexemes in rows:
            if " " not in q and email.startswith(q.lower()):
                out[mid] = "email starts with"
            elif has(lexemes, "^", 0) and all(has(lexemes, "~", i) for i in range(1, len(words))):
                out[mid] = "name starts with"
            elif all(has(lexemes, "~", i) for i in range(len(words))):
                out[mid] = "name"
            else:
                out[mid] = "name or email"
        return out

    def test_a_member_two_of_whose_words_start_alike_is_listed_once(self, engine, session):
        # "mo" finds each Anne twice in the word table (~mo, ~moreau0), and Lee Morgan after them.
        annes = [make_member(session, name=f"Anne Mo Moreau{i}", email=f"a{i}@example.com") for i in range(3)]
        lee = make_member(session, name="Lee Morgan", email="lm@example.com")
        session.commit()
        page = search_page(engine, "mo")
        assert page.total == 4 and sorted(page.rows["member_id"]) == sorted({m.id for m in [*annes, lee]})
        assert set(page.rows["matched_on"]) == {"name"}
        assert len(search_page(engine, "mo", limit=1, offset=3).rows) == 1

    def test_beyond_the_sort_limit_a_page_is_full_though_a_member_is_read_twice(self, engine, session):
        # More than SORT_LIMIT found: the page reads each rule's range in index order. "mo" reads
        # the three Annes under ~mo, again under ~moreau0-2, and the Morgans after them.
        from sqlalchemy import insert

        annes = [make_member(session, name=f"Anne Mo Moreau{i}", email=f"a{i}@example.com") for i in range(3)]
        session.commit()
        session.execute(insert(Member), [{"email": f"lm{i}@example.com", "name": f"Lee Morgan{i:03}", "country": "US",
                                          "created_at": NOW} for i in range(SORT_LIMIT)])
        session.commit()
        page = search_page(engine, "mo", limit=PAGE_SIZE)
        shown = [int(x) for x in page.rows["member_id"]]
        assert page.total == SORT_LIMIT + 3 and len(shown) == PAGE_SIZE == len(set(shown))
        assert shown[:3] == [m.id for m in annes] and set(page.rows["matched_on"]) == {"name"}

    def test_a_long_list_keeps_its_order_whatever_plan_the_database_picks(self, engine, session):
        # The Morgans are stored before the Annes, and the database is told to read no index in
        # order (a bitmap scan returns rows as stored): the list still starts with the Annes, whose
        # word "mo" comes first, and the second page follows the first without a repeat.
        from sqlalchemy import insert, text

        session.execute(insert(Member), [{"email": f"lm{i}@example.com", "name": f"Lee Morgan{i:03}", "country": "US",
                                          "created_at": NOW} for i in range(SORT_LIMIT)])
        annes = [make_member(session, name=f"Anne Mo Moreau{i}", email=f"a{i}@example.com") for i in range(3)]
        session.commit()
        with engine.connect() as conn:
            db = conn.execute(text("SELECT current_database()")).scalar_one()
            conn.execute(text(f'ALTER DATABASE "{db}" SET enable_indexscan = off'))
            conn.execute(text(f'ALTER DATABASE "{db}" SET enable_indexonlyscan = off'))
            conn.commit()
        try:
            engine.dispose()  # new connections take the database's settings
            first = search_page(engine, "mo", limit=PAGE_SIZE)
            second = search_page(engine, "mo", offset=PAGE_SIZE, limit=PAGE_SIZE)
        finally:
            with engine.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{db}" RESET ALL'))
                conn.commit()
            engine.dispose()
        shown = [int(x) for x in first.rows["member_id"]] + [int(x) for x in second.rows["member_id"]]
        assert shown[:3] == [m.id for m in annes] and len(shown) == len(set(shown)) == 2 * PAGE_SIZE
