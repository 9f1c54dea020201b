"""What a command needs, opened lazily: settings (validated, secret key ensured) and the
database (an embedded SQLite database is migrated on first use; PostgreSQL must be
migrated with ``bccd db upgrade``).

The storage modules (SQLAlchemy, every model) are imported when a command first opens the
database, not with this module: ``bccd serve`` answers SMTP before it loads them, and a
command that fails on its settings never pays for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bccd.config import Settings, ensure_secret_key, load_settings
from bccd.errors import BccdError

if TYPE_CHECKING:
    from bccd.store.db import Database


class Context:
    def __init__(self, config_path: str | None = None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None
        self._db: Database | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from bccd.log import configure_logging

            settings = load_settings(self.config_path)
            configure_logging(settings.log, stream="stderr")
            self._settings = ensure_secret_key(settings)
        return self._settings

    def database(self, *, migrate: bool = True) -> Database:
        if self._db is None:
            from bccd.store import events
            from bccd.store.db import Database
            from bccd.store.migrate import at_head

            db = Database(self.settings.database_url,
                          busy_timeout=float(self.settings.database.busy_timeout))
            if migrate and not at_head(db):
                from bccd.store.migrate import check_current, upgrade

                if db.is_sqlite:
                    upgrade(self.settings.database_url)
                elif not check_current(db):
                    db.dispose()
                    raise BccdError("the database schema is not current: run `bccd db upgrade`")
            # one-shot commands (mail link, person create …) queue their events too;
            # the outbox worker of `bccd serve` delivers them
            events.attach(db, self.settings)
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None
