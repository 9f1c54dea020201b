"""Shared fixtures: a real ``bccd serve`` per test, SQLite or PostgreSQL databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bccd.store.db import Database
from bccd.store.migrate import upgrade
from tests.support import pg
from tests.support.server import BccdServer


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    with pg.cluster() as url:
        yield url


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    url, name = pg.fresh_database(pg_admin_url)
    yield url.replace("postgresql://", "postgresql+psycopg://")
    pg.drop_database(pg_admin_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test on both engines."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def function_db(db_url: str) -> Iterator[Database]:
    """A migrated database of its own for one test, on each engine (``db_url``)."""
    upgrade(db_url)
    db = Database(db_url)
    yield db
    db.dispose()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., BccdServer]]:
    started: list[BccdServer] = []
    counter = [0]

    def make(overrides: dict[str, dict[str, Any]] | None = None, *, database_url: str | None = None,
             start: bool = True) -> BccdServer:
        counter[0] += 1
        d = tmp_path / f"srv{counter[0]}"
        d.mkdir()
        srv = BccdServer(d, overrides, database_url=database_url)
        started.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(make_server: Callable[..., BccdServer]) -> BccdServer:
    return make_server()
