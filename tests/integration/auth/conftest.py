"""Fixtures of the end-to-end authenticity tests (SPEC §3, §4.1, §4.2).

- ``dns_server`` (session): the loopback DNS server of ``tests.support.dnsserver``;
  ``dns`` is that server, emptied before and after each test.
- ``auth_server`` (module): one real ``bccd serve`` in ``auth.mode = "dmarc"`` resolving
  through the loopback DNS server (``dns.timeout`` 1 s). Its resolver cache lives as long as
  the server, so every test uses its own DNS names (see ``Ctx`` in ``smtpkit``).
- ``keys`` (session): the signing keys of the shared corpus; ``opendkim_key`` (module): a
  key made by ``opendkim-genkey``, or ``None`` when opendkim-tools is missing.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.auth.smtpkit import GENKEY, TESTMSG, OpendkimKey
from tests.support.authkit import Key, corpus_keys
from tests.support.dnsserver import DnsTestServer
from tests.support.server import BccdServer

DNS_TIMEOUT = 1.0


def auth_overrides(dns_port: int) -> dict[str, dict[str, object]]:
    return {
        "auth": {"mode": "dmarc"},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_port, "timeout": DNS_TIMEOUT},
    }


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def dns(dns_server: DnsTestServer) -> Iterator[DnsTestServer]:
    dns_server.clear()
    yield dns_server
    dns_server.clear()


@pytest.fixture(scope="module")
def auth_server(dns_server: DnsTestServer,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[BccdServer]:
    """One ``bccd serve`` for the whole module (the ``make_server`` setup, module-scoped)."""
    srv = BccdServer(tmp_path_factory.mktemp("bccd-auth"), auth_overrides(dns_server.port))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def keys() -> dict[str, Key]:
    return corpus_keys()


@pytest.fixture(scope="module")
def opendkim_key(tmp_path_factory: pytest.TempPathFactory) -> OpendkimKey | None:
    if not (GENKEY and TESTMSG):
        return None
    out = tmp_path_factory.mktemp("opendkim")
    subprocess.run([GENKEY, "-b", "2048", "-d", "example.test", "-s", "odk", "-D", str(out)],
                   check=True, timeout=60)
    record = "".join(re.findall(r'"([^"]*)"', (out / "odk.txt").read_text()))
    assert record.startswith("v=DKIM1;") and "p=" in record
    private = out / "odk.private"
    return OpendkimKey(private, record, Key.rsa_pem(private.read_bytes()))
