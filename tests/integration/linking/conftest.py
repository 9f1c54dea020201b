"""One ``bccd serve`` per test module and engine: the linking tests give every case its
own company (``tests.support.linking_world.Tenant``), so they share the process and stay
fast. ``srv`` runs each module on SQLite and PostgreSQL; ``sqlite_srv`` on SQLite only,
for behaviour that does not depend on the engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.linking_world import server_on
from tests.support.server import BccdServer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[BccdServer]:
    admin = request.getfixturevalue("pg_admin_url") if request.param == "postgresql" else None
    with server_on(request.param, tmp_path_factory.mktemp(request.param), admin) as server:
        yield server


@pytest.fixture(scope="module")
def sqlite_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BccdServer]:
    with server_on("sqlite", tmp_path_factory.mktemp("sqlite")) as server:
        yield server
