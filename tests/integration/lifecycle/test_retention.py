"""SPEC §10 ``retention``: ``bccd serve`` purges refused-copy records and quarantined
copies older than their durations, and collects blobs no message uses any more, on a
schedule (``retention.interval``) — tiny durations here, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.lifecycle.helpers import blob_exists, mail
from tests.support.linking_world import server_on
from tests.support.server import BccdServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("10")

TINY = {
    "auth": {"unverified": "quarantine"},
    "retention": {"rejections": "2s", "quarantine": "2s", "interval": "1s", "blob_grace": "0s"},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def tiny_srv(request: pytest.FixtureRequest, tmp_path) -> Iterator[BccdServer]:
    admin = request.getfixturevalue("pg_admin_url") if request.param == "postgresql" else None
    with server_on(request.param, tmp_path, admin, TINY) as srv:
        yield srv


def test_the_server_purges_expired_rejections_quarantine_and_unused_blobs(
        tiny_srv: BccdServer) -> None:
    srv = tiny_srv
    alice = srv.setup_user()
    a = alice["email"]
    attachment = ("a.pdf", "application/pdf", b"soon unused " + uuid.uuid4().bytes)
    assert mail(srv, alice["bcc_address"], frm=f'"x@evil.test" <{a}>', to="bob@client.test",
                subject="refused") == 550
    assert mail(srv, alice["bcc_address"], frm="alice@home.test", to="bob@client.test",
                subject="held") == 250
    assert mail(srv, alice["bcc_address"], frm=a, to="bob@client.test", subject="kept") == 250
    assert mail(srv, alice["bcc_address"], frm=a, to="bob@client.test", subject="deleted",
                attachments=[attachment]) == 250
    threads = {t["subject"]: t["thread_id"] for t in srv.cli("mail", "list", a)}
    [sha] = [att["sha256"] for m in srv.cli("mail", "show", str(threads["deleted"]))["messages"]
             for att in m["attachments"]]
    assert blob_exists(srv, sha)
    # `mail delete` leaves the blob to the collector (the pass that deleted it is counted
    # below; checking for it right after the delete would race a pass every second)
    srv.cli("mail", "delete", str(threads["deleted"]))

    wait_until(lambda: srv.cli("rejections", "list", a) == []
               and srv.cli("quarantine", "list", a) == [] and not blob_exists(srv, sha), timeout=15)
    assert [t["subject"] for t in srv.cli("mail", "list", a)] == ["kept"]
    passes = [e for e in srv.log_events() if e.get("event") == "lifecycle_pass"]
    assert sum(e["rejections"] for e in passes) == 1
    assert sum(e["blobs"]["deleted"] for e in passes) == 1
