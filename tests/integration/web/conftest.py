"""Fixtures for the HTTP tests: one ``bccd serve`` with the ``web_world`` company per
module (the read-mostly tests share it), fresh servers where a test needs its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import BccdServer
from tests.support.web_world import World, build


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = BccdServer(tmp_path_factory.mktemp("web"))
    srv.start()
    try:
        yield build(srv)
    finally:
        srv.stop()
