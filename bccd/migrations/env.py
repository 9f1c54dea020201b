"""Alembic environment: the URL comes from bccd (config attribute), never from an ini."""

from __future__ import annotations

from alembic import context

from bccd.store.db import Database
from bccd.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    db = Database(url)
    engine = db.engine
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # a batch migration rebuilds a table (copy, drop, rename): with foreign keys
                # on, the drop would cascade to every row that references it. Off for the
                # migration (it must be set outside a transaction), checked afterwards.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            _run(conn)
            conn.commit()
            if conn.dialect.name == "sqlite":
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows without their parents: {broken[:5]}")
    finally:
        db.dispose()


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
