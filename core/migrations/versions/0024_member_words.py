"""member search on PostgreSQL: a table of words (word, member) read in index order, for one word

The word rules read a GIN index over ``members.search_words`` (migration 0015). A GIN index
answers with a bitmap of every member a word finds, and PostgreSQL then visits each of those
rows: a LIMIT cannot stop it early. At a million members a common last name finds 33,000, and a
search of that one word took 49-61 ms of data however few rows the page shows.

``member_words`` holds one row per (word, member) in a B-tree on (word, member_id) collated "C",
so that a word's start is a range of it, read from the index alone and stopped at a LIMIT. Its
words are ``search_words``' lexemes ^ (the name's first word) and ~ (a word of the name), and *
for a word of the name or the e-mail (the ~ and @ lexemes, once each), so that every rule of a
one-word search is one range (``member_words_of``). Searches of several words keep the GIN index:
its bitmaps intersect the words' lists, which a B-tree of single words cannot do cheaply.

Triggers on ``members`` keep the table whoever writes a member (sync, demo loader, staff, a
hand-run fix, a TRUNCATE); the bulk loader fills it in one pass afterwards
(``core.db.search_index``). SQLite keeps its FTS5 index (0015), whose lists are in member order
and already stop at a LIMIT.

Revision ID: 0024
Revises: 0023
"""
from collections.abc import Sequence

from alembic import op

from core.db.search_index import POSTGRES_FILL

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POSTGRES = [
    # The rows of one member: ^ and ~ lexemes as they are, ~ and @ once more as * (name or e-mail).
    """CREATE FUNCTION member_words_of(words tsvector) RETURNS SETOF text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT w FROM unnest(tsvector_to_array(words)) w WHERE left(w, 1) IN ('^', '~')
        UNION
        SELECT '*' || substr(w, 2) FROM unnest(tsvector_to_array(words)) w WHERE left(w, 1) IN ('~', '@')
    $$""",
    'CREATE TABLE member_words (word text COLLATE "C" NOT NULL, member_id bigint NOT NULL, '
    "CONSTRAINT pk_member_words PRIMARY KEY (word, member_id))",
    """CREATE FUNCTION member_words_keep() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.search_words IS NOT DISTINCT FROM OLD.search_words THEN
                RETURN NULL;
            END IF;
            DELETE FROM member_words
            WHERE member_id = OLD.id AND word IN (SELECT member_words_of(OLD.search_words));
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO member_words (word, member_id) SELECT w, NEW.id FROM member_words_of(NEW.search_words) w;
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER trg_members_words AFTER INSERT OR UPDATE OR DELETE ON members "
    "FOR EACH ROW EXECUTE FUNCTION member_words_keep()",
    # TRUNCATE fires no row trigger: emptied with the members it indexes.
    """CREATE FUNCTION member_words_clear() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE member_words;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER trg_members_words_truncate AFTER TRUNCATE ON members "
    "FOR EACH STATEMENT EXECUTE FUNCTION member_words_clear()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for statement in _POSTGRES:
        op.execute(statement)
    for statement in POSTGRES_FILL:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for trigger, function in (("trg_members_words", "member_words_keep"),
                              ("trg_members_words_truncate", "member_words_clear")):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON members")
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.execute("DROP TABLE IF EXISTS member_words")
    op.execute("DROP FUNCTION IF EXISTS member_words_of(tsvector)")
