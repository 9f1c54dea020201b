"""Fixtures of the SMTP front's tests (``dns``, ``certs`` and ``figures`` come from
``tests/integration/conftest.py``).

- ``shared`` (module): one ``bccd serve`` (auth off) with the user alice, for the tests
  that only look at replies; each such test uses its own Message-IDs.
- ``strict`` (module): one ``bccd serve`` with tight limits (timeout 3 s, a 1000 B/s data
  floor, a 7 s session deadline, 3 connections per address, 10 calls per command, a 1 s
  greeting pause) for the abuse tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
