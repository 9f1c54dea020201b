"""Fixtures for the IMAP suite: real Dovecot servers (one per session and flavour; a fresh
IMAP user per test), a fresh SQLite database per test, a bccd user with a confirmed
alternate, and the ingest ``sink``.

``sink`` is the real :class:`bccd.ingest.pipeline.Pipeline` (its ``ingest_imap``). Set
``BCCD_TEST_IMAP_SINK=fake`` to run the suite against :class:`RecordingSink`, a minimal
stand-in that stores and dedups by Message-ID itself — useful when the pipeline is
broken and you want to know whether the IMAP side is.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bccd import accounts as users
from bccd.config import Settings
from bccd.crypto import SecretBox
from bccd.imap.sync import IngestSink
from bccd.mailboxes import accounts
from bccd.store.db import Database
from bccd.store.models import Alternate
from tests.integration.imap.helpers import RecordingSink
from tests.support.dovecot import Dovecot
from tests.support.dovecot import available as dovecot_available
from tests.support.oauth import OAuthServer

USER_EMAIL = "alice@acme.test"
ALT_EMAIL = "alice.smith@acme-sales.test"
_ids = itertools.count(1)


# ---------------------------------------------------------------- servers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not dovecot_available():
        skip = pytest.mark.skip(reason="dovecot is not installed")
        for item in items:
            if "integration/imap" in str(item.path):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_all() -> Iterator[Dovecot]:
    """A server whose mailbox has a SPECIAL-USE ``\\All`` folder."""
    with Dovecot(all_folder=True) as server:
        yield server


@pytest.fixture(scope="session")
def oauth_server() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_oauth(oauth_server: OAuthServer) -> Iterator[Dovecot]:
    with Dovecot(oauth_introspection_url=oauth_server.introspection_url) as server:
        yield server


@pytest.fixture
def imap_user(dovecot: Dovecot) -> str:
    return dovecot.add_user(f"u{next(_ids)}-{os.getpid()}", "secret")


# ---------------------------------------------------------------- bccd side


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite by default; ``@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"],
    indirect=True)`` runs a test on both engines (PostgreSQL from the root conftest)."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'data' / 'bccd.sqlite3'}"


BOTH_ENGINES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": database_url},
            "storage": {"data_dir": str(tmp_path / "data")},
            "security": {"secret_key": "imap-test-key"},
            "auth": {"mode": "off"},
            "imap": {"initial_days": 30, "poll_interval": 1, "batch_size": 3},
        }
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    from bccd.store.migrate import upgrade

    upgrade(settings.database_url)
    database = Database(settings.database_url)
    yield database
    database.dispose()


@dataclass(frozen=True)
class BccdUser:
    id: int
    email: str
    alternate: str


@pytest.fixture
def bccd_user(db: Database) -> BccdUser:
    with db.transaction() as s:
        company = users.create_company(s, "Acme", "acme")
        u = users.create_user(s, USER_EMAIL, company).user
        s.add(Alternate(user_id=u.id, email=ALT_EMAIL, status="confirmed"))
        s.add(Alternate(user_id=u.id, email="pending@acme.test", status="pending"))
        s.flush()
        return BccdUser(u.id, u.email, ALT_EMAIL)


@pytest.fixture
def sink(settings: Settings, db: Database) -> IngestSink:
    """The ingest entry point under test (the real pipeline unless BCCD_TEST_IMAP_SINK=fake)."""
    if os.environ.get("BCCD_TEST_IMAP_SINK") == "fake":
        return RecordingSink(db)
    from bccd.ingest.pipeline import Pipeline
    from bccd.store.blobs import BlobStore

    return Pipeline(settings, db, BlobStore(settings.blob_dir))


# ---------------------------------------------------------------- helpers


@pytest.fixture
def box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secret_keys)


@pytest.fixture
def add_account(db: Database, box: SecretBox, bccd_user: BccdUser) -> Callable[..., int]:
    def add(server: Dovecot, login: str, *, password: str | None = None, **kw: Any) -> int:
        kw.setdefault("port", server.ssl_port)
        kw.setdefault("security", "ssl")
        kw.setdefault("ca_file", server.ca_file)
        auth = kw.pop("auth", None) or accounts.PasswordAuth(password or server.users[login])
        with db.transaction() as s:
            row = accounts.add_account(
                s,
                box,
                user_email=bccd_user.email,
                host="127.0.0.1",
                username=login,
                auth=auth,
                **kw,
            )
            return row.id

    return add


@pytest.fixture
async def stop_event() -> AsyncIterator[asyncio.Event]:
    ev = asyncio.Event()
    yield ev
    ev.set()
