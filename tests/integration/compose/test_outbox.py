"""Nothing accepted into the outbox is lost (SPEC §12): a message that met a temporary
failure is filed at once as queued, retried (the first time within 30 s), and sent or
reported failed — across a restart and a kill -9 of ``bccd serve`` too — with the
``message.sent`` / ``message.send_failed`` webhooks."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bccd import replies as R
from bccd.compose.prepare import SendRequest
from bccd.compose.send import Sender
from bccd.config import ensure_secret_key, load_settings
from bccd.ingest.outcome import Disposition, Outcome
from bccd.ingest.pipeline import build_pipeline
from bccd.store import events
from bccd.store.db import Database
from tests.support.compose_world import ComposeWorld, Mailuser, wait_for

pytest.importorskip("authlib", reason="the Gmail-like peer takes OAuth tokens of an Authlib provider")
from tests.support.gmail_like import GmailLike  # noqa: E402
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


async def test_a_message_sent_but_not_filed_is_filed_by_the_outbox(world: ComposeWorld,
                                                                   alice: Mailuser) -> None:
    """The database fails just as the sent message is to be filed: the answer is still
    201 (it was sent), and the outbox of the running server files it a moment later — one
    message, its sent-folder copy, one ``message.sent``."""
    settings = ensure_secret_key(load_settings(str(world.srv.config)))
    db = Database(settings.database_url)
    events.attach(db, settings)
    try:
        pipeline = build_pipeline(settings, db, authenticate=False)
        real = pipeline.file_composed
        calls: list[int] = []

        async def failing_once(raw: bytes, **kw: object) -> Outcome:
            calls.append(1)
            if len(calls) == 1:
                return Outcome(Disposition.TEMPFAIL, R.TEMP_FAILURE, reason="database away")
            return await real(raw, **kw)  # type: ignore[arg-type]

        pipeline.file_composed = failing_once  # type: ignore[method-assign]
        answer = await Sender(settings, db, pipeline).send(SendRequest(
            user_id=alice.user_id, to=("dana@client.test",), subject="Filed by the outbox",
            text="Sent first, filed after"))
    finally:
        db.dispose()
    assert answer.status_code == 201 and answer.body["status"] == "sent"
    assert answer.body["id"] is None
    mid = answer.body["message_id"]
    assert world.received(mid)
    with world.api(alice.token) as api:
        [t] = wait_for(lambda: api.get("/threads", params={"q": "Filed by the outbox"}).json()["threads"])
        [m] = api.get(f"/threads/{t['thread_id']}").json()["messages"]
    assert m["sources"] == ["compose"] and m["message_id"] == mid and m["send"]["status"] == "sent"
    wait_for(lambda: f"<{mid}>" in world.dovecot.message_ids(alice.email, "Sent"))
    time.sleep(2)
    assert len([e for e in world.hook_events("message.sent") if e["data"]["message_id"] == mid]) == 1
