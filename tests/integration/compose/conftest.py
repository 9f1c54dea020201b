"""Fixtures for sending (SPEC §12): one ``ComposeWorld`` (OAuth provider, Dovecot, Postfix
submission, capture server, ``bccd serve``) per module; a fresh bccd user with a
connected mailbox per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import pg
from tests.support.compose_world import ComposeWorld, Mailuser
from tests.support.dovecot import available as dovecot_available
from tests.support.submission import available as postfix_available


def _skip_without_servers() -> None:
    pytest.importorskip("authlib", reason="the OAuth provider is built on Authlib")
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    if not postfix_available():
        pytest.skip("postfix is not installed or we are not root")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeWorld]:
    _skip_without_servers()
    w = ComposeWorld(tmp_path_factory.mktemp("compose"))
    try:
        yield w
    finally:
        w.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def any_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[ComposeWorld]:
    """The world on each database engine."""
    _skip_without_servers()
    url = None
    name = None
    if request.param == "postgresql":
        admin = request.getfixturevalue("pg_admin_url")
        url, name = pg.fresh_database(admin)
        url = url.replace("postgresql://", "postgresql+psycopg://")
    w = ComposeWorld(tmp_path_factory.mktemp(f"compose-{request.param}"), database_url=url)
    try:
        yield w
    finally:
        w.close()
        if name is not None:
            pg.drop_database(request.getfixturevalue("pg_admin_url"), name)


@pytest.fixture
def alice(world: ComposeWorld) -> Mailuser:
    world.submission.clear_refusals()
    return world.user("alice")
