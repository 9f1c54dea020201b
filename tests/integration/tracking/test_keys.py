"""Rotating ``security.secret_key`` (SPEC §10, §13): tracking tokens signed with a key
moved to ``old_secret_keys`` keep working; once it is removed they answer ``404`` —
and a restart keeps every other tracking state (the counts, the links). Its own world:
the server is restarted with changed keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.compose.conftest import _skip_without_servers
from tests.support import tracking_kit as tk
from tests.support.compose_world import ComposeWorld
from tests.support.server import write_config

pytestmark = [pytest.mark.slow, pytest.mark.spec("13"), pytest.mark.xdist_group("tracking_keys")]

HTML = '<p><a href="https://example.com/k">k</a></p>'


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeWorld]:
    _skip_without_servers()
    w = ComposeWorld(tmp_path_factory.mktemp("tracking-keys"))
    try:
        yield w
    finally:
        w.close()


def _restart(world: ComposeWorld, **security: object) -> None:
    world.srv.stop()
    world.srv.sections["security"] = dict(security)
    write_config(world.srv.config, world.srv.sections)
    world.srv.start()


def test_an_old_key_verifies_and_a_key_rotated_out_does_not(keyed: ComposeWorld) -> None:
    world = keyed
    user = world.user("rotate")
    tk.enable(world, user)
    sent, sent_at = tk.send(world, user, html=HTML, subject="Signed with the first key")
    got = tk.received(world, sent["message_id"])
    first_key = (Path(world.srv.dir) / "var" / "secret_key").read_text().strip()
    tk.after_sending(sent_at, 10.5)
    _restart(world, secret_key="the-second-key-" + "x" * 30, old_secret_keys=[first_key])
    r = tk.fetch(world, got.link_path(0), tk.BROWSER)
    assert r.status_code == 302 and r.headers["location"] == "https://example.com/k"
    assert tk.fetch(world, got.pixel_path, tk.BROWSER).status_code == 200
    tracking = tk.tracking_of(world, user, sent)
    assert tracking["opens"]["human"] == 1 and tracking["clicks"][0]["human"] == 1
    before = tk.hit_rows(world)
    _restart(world, secret_key="the-second-key-" + "x" * 30, old_secret_keys=[])
    for path in (got.link_path(0), got.pixel_path, got.decoy_path):
        r = tk.fetch(world, path, tk.BROWSER)
        assert r.status_code == 404 and "location" not in r.headers
    assert tk.hit_rows(world) == before
