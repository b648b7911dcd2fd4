"""Run the Alembic migrations programmatically (``python -m cli migrate``, ``make run``, tests).

Alembic itself is imported only to migrate: every command checks that the schema is current
first, and a finance script's export should not pay for loading the migration machinery. The
check reads the stored revision and compares it with the newest migration file: revision ids
are the files' four-digit prefixes, one linear history (a test holds Alembic to the same answer).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str = "") -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    before = current_revision(engine)
    with engine.begin() as connection:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    if engine.dialect.name == "postgresql" and before is not None and current_revision(engine) != before:
        # A migration may have filled a table in bulk (0024: a row per word of every member): its
        # rows need statistics, and a VACUUM before any index-only scan of them works. (SQLite's
        # migrations fill nothing its planner needs figures for; its ANALYZE reads every index.)
        from core.db.maintenance import analyze

        analyze(engine, why=f"migrating from {before}")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def head_revision() -> str | None:
    numbers = sorted(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    return numbers[-1] if numbers else None


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
