"""SQLite's member search index (FTS5 table ``members_search``, migration 0015): how it is filled
from ``members`` in one pass, after a bulk load that ran without its triggers.

Contentless with the columns (first_word, name, email); first_word is the name up to its first
space, worked out by the same expression as the triggers' (a different one would leave words the
triggers cannot delete).
"""

from __future__ import annotations

FIRST_WORD = "substr(name, 1, instr(name || ' ', ' ') - 1)"
SQLITE_FILL = (
    "INSERT INTO members_search(members_search) VALUES ('delete-all')",
    f"INSERT INTO members_search(rowid, first_word, name, email) SELECT id, {FIRST_WORD}, name, email FROM members",
)
