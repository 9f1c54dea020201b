"""Fixtures of the reliability and security battery.

- ``shared`` (module): one ``bccd serve`` (auth off) with the user alice, for the tests
  that only look at replies; each such test uses its own Message-IDs.
- ``strict`` (module): one ``bccd serve`` with tight limits (timeout 3 s, a 1000 B/s data
  floor, a 7 s session deadline, 3 connections per address, 10 calls per command, a 1 s
  greeting pause) for the abuse tests.
- ``dns`` (session): the loopback DNS server of ``tests.support.dnsserver``.
- ``certs`` (session): a trustme CA and two server certificates for ``bccd.test``.
- ``figures``: ``tests.support.reliability_report.record``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.dnsserver import DnsTestServer
from tests.support.reliability_report import record
from tests.support.server import BccdServer


@dataclass
class Running:
    srv: BccdServer
    alice: dict[str, Any]

    @property
    def port(self) -> int:
        return self.srv.smtp_port

    @property
    def rcpt(self) -> str:
        return str(self.alice["bcc_address"])

    @property
    def db(self) -> Path:
        return self.srv.dir / "var" / "bccd.sqlite3"


def _running(tmp: Path, overrides: dict[str, dict[str, Any]] | None = None) -> Iterator[Running]:
    srv = BccdServer(tmp, overrides)
    srv.start()
    try:
        yield Running(srv, srv.setup_user())
    finally:
        died = srv.proc is not None and srv.proc.poll() is not None
        srv.stop()
        if died:  # its tests failed on connections; say why the server went
            pytest.fail(f"bccd serve exited while its tests ran:\n{srv.log()[-6000:]}")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _running(tmp_path_factory.mktemp("shared"))


STRICT = {
    "smtp": {"timeout": 3, "min_data_rate": 1000, "connection_deadline": 7,
             "max_connections_per_ip": 3, "command_call_limit": 10, "greet_pause": 1,
             "max_line_length": "64KiB"},
}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _running(tmp_path_factory.mktemp("strict"), STRICT)


@pytest.fixture(scope="session")
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@dataclass(frozen=True)
class Certs:
    ca: trustme.CA
    ca_file: Path
    first: tuple[Path, Path]    # (cert chain, key) — serial of the first
    second: tuple[Path, Path]   # another certificate for the same name


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca_file = d / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    pairs = []
    for name in ("first", "second"):
        cert = ca.issue_cert("bccd.test", "127.0.0.1")
        chain, key = d / f"{name}.pem", d / f"{name}.key"
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key))
        pairs.append((chain, key))
    return Certs(ca, ca_file, pairs[0], pairs[1])


@pytest.fixture
def figures() -> Callable[..., None]:
    return record
