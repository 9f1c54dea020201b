"""Fixtures of the authenticity tests: a loopback DNS server, a resolver on it, keys.

``dns`` is the running :class:`tests.support.dnsserver.DnsTestServer`, emptied before and
after each test; ``resolver`` is a fresh :class:`bccd.auth.dns.Resolver` pointed at it (short
timeout, empty cache); ``authenticator`` uses that resolver.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[3]
if str(_REPO) not in sys.path:  # so `tests.support` imports without an installed package
    sys.path.insert(0, str(_REPO))

from bccd.auth.authenticator import DmarcAuthenticator  # noqa: E402
from bccd.auth.dns import Resolver  # noqa: E402
from tests.support.dnsserver import DnsTestServer  # noqa: E402
from tests.unit.auth.authkit import AUTHSERV_ID, Key, corpus_keys  # noqa: E402

# Short enough to keep the timeout cases quick, long enough for a loaded CI runner.
RESOLVER_TIMEOUT = 0.5


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
