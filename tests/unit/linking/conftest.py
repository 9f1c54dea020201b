"""A migrated SQLite database per test, and small builders for linking state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bccd.store.db import Database
from bccd.store.migrate import upgrade


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'unit.sqlite3'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()
