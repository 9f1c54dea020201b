"""Fixtures shared by the unit tests.

Authenticity (``auth/``, and the pipeline's authenticity stage in ``ingest/``): ``dns`` is
the running :class:`tests.support.dnsserver.DnsTestServer`, emptied before and after each
test; ``resolver`` is a fresh :class:`bccd.auth.dns.Resolver` pointed at it (short timeout,
empty cache); ``authenticator`` uses that resolver; ``keys`` are the corpus signing keys.

Storage: ``db`` is a fresh SQLite database with one company (Acme) and its user
alice@acme.test, ``settings`` the settings that go with it (``make_settings`` for others);
``migrated_db`` is an empty database migrated to HEAD, for tests that build their own
company (``tests.unit.builders``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bccd import accounts
from bccd.auth.authenticator import DmarcAuthenticator
from bccd.auth.dns import Resolver
from bccd.config import Settings
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import Base, User
from tests.support.authkit import AUTHSERV_ID, Key, corpus_keys
from tests.support.dnsserver import DnsTestServer

# Short enough to keep the timeout cases quick, long enough for a loaded CI runner.
RESOLVER_TIMEOUT = 0.5


# -- authenticity ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def dns(dns_server: DnsTestServer) -> Iterator[DnsTestServer]:
    dns_server.clear()
    yield dns_server
    dns_server.clear()


@pytest.fixture
def resolver(dns: DnsTestServer) -> Resolver:
    return Resolver(["127.0.0.1"], port=dns.port, timeout=RESOLVER_TIMEOUT)


@pytest.fixture
def authenticator(resolver: Resolver) -> DmarcAuthenticator:
    return DmarcAuthenticator(resolver, authserv_id=AUTHSERV_ID,
                         trusted_authserv_ids=["relay.corp.test"])


@pytest.fixture(scope="session")
def keys() -> dict[str, Key]:
    return corpus_keys()


# -- storage -----------------------------------------------------------------------------


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


@pytest.fixture
def migrated_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'unit.sqlite3'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()
