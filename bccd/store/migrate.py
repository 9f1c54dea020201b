"""Alembic driven from code: ``upgrade(url)`` brings a database to the newest revision.

``at_head(db)`` answers "is this database current?" from its ``alembic_version`` row and
``HEAD`` alone — without importing alembic and loading every revision script, which is a
quarter of a second of every command's start (the CLI migrates an embedded SQLite
database before each command). ``HEAD`` is the newest revision's id; a test holds it
equal to alembic's own answer, so a new migration must update it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bccd.store.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

# inside the package (bccd/migrations), so an installed wheel migrates as a checkout does
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


HEAD = "0010"


def at_head(db: Database) -> bool:
    """True when the database's recorded revision is ``HEAD`` (False when it has none)."""
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:  # no alembic_version table: a new database
        return False
    return [r[0] for r in rows] == [HEAD]


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(slug)s")
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def check_current(db: Database) -> bool:
    """True when the database is at the newest revision."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(db.url))
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    return set(current) == set(script.get_heads())
