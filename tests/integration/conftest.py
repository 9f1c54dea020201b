"""Fixtures shared by the integration folders (the SMTP front, fault injection,
operations).

- ``dns`` (session): the loopback DNS server of ``tests.support.dnsserver`` (folders whose
  tests need it emptied per test define their own ``dns``).
- ``certs`` (session): a trustme CA and two server certificates for ``bccd.test``.
- ``figures``: ``tests.support.reliability_report.record`` — the reliability figures
  (docs/reliability.md).
- ``browser`` (module): headless Chromium (``tests.support.browser``) for the Mail page's
  tests; the tests that use it carry ``needs_chromium``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.browser import chromium
from tests.support.dnsserver import DnsTestServer
from tests.support.reliability_report import record


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


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
