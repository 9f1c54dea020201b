"""Unit fixtures: a fresh SQLite database with one company and user, and settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bccd import accounts
from bccd.config import Settings
from bccd.store.db import Database
from bccd.store.models import Base, User


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    data: dict[str, Any] = {"storage": {"data_dir": str(tmp_path / "var")},
                            "http": {"public_url": "https://crm.example/bcc"},
                            "smtp": {"hostname": "bccd.test"}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Settings.model_validate(data)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def new_db(url: str) -> Database:
    database = Database(url)
    Base.metadata.create_all(database.engine)
    with database.transaction() as s:
        company = accounts.create_company(s, "Acme", "acme")
        accounts.create_user(s, "alice@acme.test", company, name="Alice <Admin>")
    return database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = new_db(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    yield database
    database.dispose()


def alice(session: Any) -> User:
    return accounts.get_user(session, "alice@acme.test")
