"""The linking tests build their own company (``tests.unit.builders``): here ``db`` is the
empty migrated database."""

from __future__ import annotations

import pytest

from bccd.store.db import Database


@pytest.fixture
def db(migrated_db: Database) -> Database:
    return migrated_db
