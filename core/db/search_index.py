"""The member search indexes, and how each is filled from ``members`` in one pass (the
migration that creates it, and the bulk loader, which runs without their triggers).

SQLite: the FTS5 table ``members_search`` (migration 0015).
Contentless with the columns (first_word, name, email); first_word is the name up to its first
space, worked out by the same expression as the triggers' (a different one would leave words the
triggers cannot delete).

PostgreSQL: the table ``member_words`` (migration 0024), one row per (word, member) from the
lexemes of ``members.search_words`` (``member_words_of``); its primary key is built after the
rows, which is several times faster than keeping it row by row.
"""

from __future__ import annotations

FIRST_WORD = "substr(name, 1, instr(name || ' ', ' ') - 1)"
SQLITE_FILL = (
    "INSERT INTO members_search(members_search) VALUES ('delete-all')",
    f"INSERT INTO members_search(rowid, first_word, name, email) SELECT id, {FIRST_WORD}, name, email FROM members",
)
POSTGRES_FILL = (
    "TRUNCATE member_words",
    "ALTER TABLE member_words DROP CONSTRAINT pk_member_words",
    "INSERT INTO member_words (word, member_id) SELECT w, id FROM members, member_words_of(search_words) w",
    "ALTER TABLE member_words ADD CONSTRAINT pk_member_words PRIMARY KEY (word, member_id)",
)
