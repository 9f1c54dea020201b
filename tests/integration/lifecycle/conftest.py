"""Fixtures for the lifecycle tests.

``lc_srv``: one ``bccd serve`` per engine (SQLite, PostgreSQL) shared by the offboarding
and erasure tests; every test makes its own companies (``World``), so tests stay
independent while the server is started only twice. It quarantines copies from
unconfirmed addresses and collects unreferenced blobs at once (``blob_grace = 0``) so the
tests can see blobs go. ``function_db``: a migrated database without a server, for the
function-level tests, on both engines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.linking_world import server_on
from tests.support.server import BccdServer

LC_OVERRIDES = {
    "auth": {"unverified": "quarantine"},
    "retention": {"blob_grace": "0s"},
}


@pytest.fixture(scope="package", params=["sqlite", "postgresql"])
def lc_srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[BccdServer]:
    admin = request.getfixturevalue("pg_admin_url") if request.param == "postgresql" else None
    with server_on(request.param, tmp_path_factory.mktemp(f"lc-{request.param}"), admin,
                   LC_OVERRIDES) as server:
        yield server


@pytest.fixture
def blob_root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"
