"""Fixtures: a capture SMTP server standing in for the outbound relay, and ``bccd serve``
configured to send through it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.capture_smtp import CaptureSmtp
from tests.support.server import BccdServer


@pytest.fixture
def capture() -> Iterator[CaptureSmtp]:
    with CaptureSmtp() as cap:
        yield cap


@pytest.fixture
def serve(make_server: Callable[..., BccdServer], capture: CaptureSmtp) -> Callable[..., BccdServer]:
    """``serve(auth={"unverified": "quarantine"}, …)`` → a started server whose outbound
    relay is ``capture``, with a user alice@acme.test (``srv.alice``)."""

    def start(**sections: dict[str, Any]) -> BccdServer:
        overrides: dict[str, dict[str, Any]] = {"outbound": {"port": capture.port}}
        for name, values in sections.items():
            overrides.setdefault(name, {}).update(values)
        srv = make_server(overrides)
        srv.alice = srv.setup_user()  # type: ignore[attr-defined]
        return srv

    return start
