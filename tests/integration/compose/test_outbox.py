"""Nothing accepted into the outbox is lost (SPEC §12): a message that met a temporary
failure is filed at once as queued, retried (the first time within 30 s), and sent or
reported failed — across a restart and a kill -9 of ``bccd serve`` too — with the
``message.sent`` / ``message.send_failed`` webhooks."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support.compose_world import ComposeWorld, Mailuser, wait_for
from tests.support.gmail_like import GmailLike
from tests.support.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("compose_outbox")]


def _queued(world: ComposeWorld, user: Mailuser, subject: str) -> dict:
    with world.api(user.token) as api:
        r = api.post("/messages", json={"to": ["dana@client.test"], "subject": subject,
                                        "html": f"<p>{subject}</p>"})
        assert r.status_code == 202, r.text
        body = dict(r.json())
    assert body["status"] == "queued" and body["id"] and body["thread_id"]
    return body


def _message(world: ComposeWorld, user: Mailuser, sent: dict) -> dict:
    with world.api(user.token) as api:
        [m] = api.get(f"/threads/{sent['thread_id']}").json()["messages"]
        return dict(m)


def test_a_server_that_is_down_is_retried_within_30_s_and_the_message_sent(world: ComposeWorld) -> None:
    port = free_port()
    ca = world.tmp / "down-ca.pem"
    ca.write_text(Path(world.dovecot.ca_file).read_text())
    user = world.user("down", smtp_port=port, ca_file=str(ca))
    gm = GmailLike(world.dovecot, user.email, save_to_sent=False)
    gm.port = port
    ca.write_text(Path(world.ca_with(gm.ca_file)).read_text())  # trusts the server to come
    started = time.monotonic()
    sent = _queued(world, user, "While the server is down")
    assert "refused" in sent["reason"] or "cannot talk" in sent["reason"]
    assert _message(world, user, sent)["sources"] == ["compose"]   # filed at once
    with gm:
        [got] = gm.wait_for(1, timeout=30)
        first_retry = time.monotonic() - started
        [hook] = wait_for(lambda: [e for e in world.hook_events("message.sent")
                                   if e["data"]["message_id"] == sent["message_id"]])
    assert first_retry < 30
    assert f"<{sent['message_id']}>".encode() in got.data
    assert hook["data"]["status"] == "sent" and hook["data"]["id"] == sent["id"]


@pytest.mark.parametrize("how", ["restart", "kill -9"])
def test_a_queued_message_is_sent_after_a_restart(world: ComposeWorld, alice: Mailuser,
                                                  how: str) -> None:
    world.submission.defer("dana@client.test")
    sent = _queued(world, alice, f"Queued across a {how}")
    if how == "kill -9":
        world.srv.kill9()
    else:
        assert world.srv.stop(signal.SIGTERM) == 0
    world.submission.clear_refusals()
    assert world.received(sent["message_id"], timeout=1) == []
    world.srv.start()
    [got] = world.received(sent["message_id"], timeout=60)
    assert f"<{sent['message_id']}>".encode() in got
    [hook] = wait_for(lambda: [e for e in world.hook_events("message.sent")
                               if e["data"]["message_id"] == sent["message_id"]], timeout=60)
    assert hook["data"]["accepted"] == ["dana@client.test"]
    time.sleep(2)
    assert len(world.received(sent["message_id"], timeout=0)) == 1


def test_a_send_that_cannot_go_out_any_more_is_reported_failed(world: ComposeWorld,
                                                              alice: Mailuser) -> None:
    world.submission.defer("dana@client.test")
    sent = _queued(world, alice, "Its mailbox stops sending")
    world.srv.cli("imap", "set", str(alice.mailbox_id), "--no-smtp")
    [hook] = wait_for(lambda: [e for e in world.hook_events("message.send_failed")
                               if e["data"]["message_id"] == sent["message_id"]], timeout=60)
    data = hook["data"]
    assert data["status"] == "failed" and "cannot send" in data["reason"]
    assert data["refused"][0]["address"] == "dana@client.test"
    world.submission.clear_refusals()
    time.sleep(3)
    assert world.received(sent["message_id"], timeout=0) == []
