"""member search by index: words of names and e-mails folded for case and accents; invoice numbers

Member search read the whole members table for every query (``email LIKE '%x%'``,
``lower(name) LIKE '%x%'``: 0.45 s at 100,000 members, 4-5 s at a million) and could not find
"Fernández" by "fernandez". Search now matches the start of words of the name or e-mail, case
and accents folded, from indexes the database keeps itself, whoever writes the rows (the sync,
the demo loader, staff tools, a hand-run fix):

- SQLite: an FTS5 table ``members_search`` over the name's first word, the name and the e-mail
  (contentless: it stores only the index, not a second copy of the rows; ``detail=column``),
  tokenizer ``unicode61 remove_diacritics 2`` (Unicode case folding, accents removed), kept by
  three triggers on ``members``.
- PostgreSQL: a stored generated column ``members.search_words`` (a ``tsvector`` of the folded
  words, each led by a mark: ^ the name's first word, ~ a word of the name, @ one of the e-mail)
  with a GIN index, and
  a ``text_pattern_ops`` index for the e-mail's start. ``memberdesk_fold`` is
  ``lower(unaccent(text))`` declared IMMUTABLE (with the dictionary named, which is what makes
  that true) so a generated column may use it. ``unaccent`` is a "trusted" extension since
  PostgreSQL 13: the database owner may create it without being a superuser. (Trigram indexes,
  ``pg_trgm``, were measured first: their recheck folds every candidate name again, 0.3-0.9 s for
  a last name at a million members.)

Also indexes ``invoices.number``: every text search looks the text up as an invoice number, which
read the whole invoices table (18 million rows at a million members).

Revision ID: 0015
Revises: 0014
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Contentless (the table keeps only the index, no copy of names or e-mails), detail=column (which
# column a word is in, not its position: ten times faster for the word rules, and all they need),
# the name's first word in a column of its own for "name starts with". The triggers must hand FTS5
# the old values exactly when a row changes or goes, or the index would keep stale words.
FIRST_WORD = "substr({row}.name, 1, instr({row}.name || ' ', ' ') - 1)"
COLUMNS = "rowid, first_word, name, email"
_NEW = f"NEW.id, {FIRST_WORD.format(row='NEW')}, NEW.name, NEW.email"
_OLD = f"'delete', OLD.id, {FIRST_WORD.format(row='OLD')}, OLD.name, OLD.email"
# Fills the index from members (the migration, and the fast demo loader after a bulk load).
SQLITE_FILL = [
    "INSERT INTO members_search(members_search) VALUES ('delete-all')",
    f"INSERT INTO members_search({COLUMNS}) SELECT id, {FIRST_WORD.format(row='members')}, name, email FROM members",
]
_SQLITE = [
    "CREATE VIRTUAL TABLE members_search USING fts5(first_word, name, email, content='', detail=column, "
    "tokenize='unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER trg_members_search_insert AFTER INSERT ON members BEGIN "
    f"INSERT INTO members_search({COLUMNS}) VALUES ({_NEW}); END",
    f"CREATE TRIGGER trg_members_search_delete AFTER DELETE ON members BEGIN "
    f"INSERT INTO members_search(members_search, {COLUMNS}) VALUES ({_OLD}); END",
    f"CREATE TRIGGER trg_members_search_update AFTER UPDATE OF name, email, id ON members BEGIN "
    f"INSERT INTO members_search(members_search, {COLUMNS}) VALUES ({_OLD}); "
    f"INSERT INTO members_search({COLUMNS}) VALUES ({_NEW}); END",
    *SQLITE_FILL,
]




def _marked(mark: str, value: str) -> str:
    """The words of ``value`` (runs of letters and digits) as an array, each led by ``mark``."""
    trimmed = f"regexp_replace({value}, '^[^[:alnum:]]+|[^[:alnum:]]+$', '', 'g')"
    return f"string_to_array('{mark}' || regexp_replace({trimmed}, '[^[:alnum:]]+', ' {mark}', 'g'), ' ')"


# One lexeme per word, led by where it stands: ^ the name up to its first space (as SQLite's
# first_word), ~ any word of the name, @ a word of the e-mail. A rule is then a plain index
# lookup ("'~moreau':*"); weights would do the same but make PostgreSQL re-read every candidate row.
SEARCH_WORDS = "array_to_tsvector({} || {} || {})".format(
    _marked("^", "split_part(memberdesk_fold(name), ' ', 1)"), _marked("~", "memberdesk_fold(name)"),
    _marked("@", "memberdesk_fold(email)"))


def _postgres_upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    # Schema-qualified, so the function means the same under any search_path (restores, ANALYZE).
    schema = op.get_bind().exec_driver_sql(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'unaccent'").scalar_one()
    op.execute(f"""CREATE OR REPLACE FUNCTION memberdesk_fold(text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT lower("{schema}".unaccent('"{schema}".unaccent'::regdictionary, $1)) $$""")
    # Stored, so a search reads the words instead of folding every candidate name again.
    op.execute(f"ALTER TABLE members ADD COLUMN search_words tsvector GENERATED ALWAYS AS ({SEARCH_WORDS}) STORED")
    op.execute("CREATE INDEX ix_members_search_words ON members USING gin (search_words)")
    # "starts with" as a range scan whatever the database's collation (LIKE 'x%' needs this class).
    op.execute("CREATE INDEX ix_members_email_pattern ON members (email text_pattern_ops)")


def upgrade() -> None:
    op.create_index("ix_invoices_number", "invoices", ["number"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE:
            op.execute(statement)
    else:
        _postgres_upgrade()
    op.execute("ANALYZE members")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_members_search_{name}")
        op.execute("DROP TABLE IF EXISTS members_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_members_email_pattern")
        op.execute("DROP INDEX IF EXISTS ix_members_search_words")
        op.execute("ALTER TABLE members DROP COLUMN IF EXISTS search_words")
        op.execute("DROP FUNCTION IF EXISTS memberdesk_fold(text)")
    op.drop_index("ix_invoices_number", table_name="invoices")
