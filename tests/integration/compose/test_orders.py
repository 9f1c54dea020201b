"""A message written in bccd is filed at once, and the copies of it that arrive later — a
Smart Bcc copy relayed by the submission server, the sync of the sent folder — are the same
message, not a second one (SPEC §12): in each order, on both databases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.compose_world import ComposeWorld, Mailuser, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("compose_orders")]


@pytest.fixture
def user(any_world: ComposeWorld) -> Mailuser:
    any_world.submission.clear_refusals()
    return any_world.user("orders")


def _thread(api: httpx.Client, thread_id: int) -> dict[str, Any]:
    return dict(api.get(f"/threads/{thread_id}").json())


def _only_message(api: httpx.Client, sent: dict[str, Any], sources: list[str]) -> dict[str, Any]:
    """Wait until the thread's one message has ``sources``; no second message appears."""
    def done() -> dict[str, Any] | None:
        t = _thread(api, sent["thread_id"])
        return t if sorted(t["messages"][0]["sources"]) == sorted(sources) else None
    t = wait_for(done)
    assert len(t["messages"]) == 1 and t["messages"][0]["id"] == sent["id"]
    listed = api.get("/threads").json()["threads"]
    assert [x["thread_id"] for x in listed if x["subject"] == t["subject"]] == [sent["thread_id"]]
    return t


def test_compose_then_its_bcc_copy_is_one_message(any_world: ComposeWorld, user: Mailuser) -> None:
    with any_world.api(user.token) as api:
        r = api.post("/messages", json={"to": ["dana@client.test"], "bcc": [user.bcc_address],
                                        "subject": "Order one", "text": "Hello Dana",
                                        "deal_id": any_world.ids["deal"]})
        assert r.status_code == 201, r.text
        sent = r.json()
        t = _only_message(api, sent, ["compose", "bcc"])
    assert ("deal", any_world.ids["deal"], "manual") in {(lk["kind"], lk["id"], lk["how"])
                                                         for lk in t["links"]}
    # the counterpart never sees the Bcc; the user's filed copy keeps it
    [got] = any_world.received(sent["message_id"])
    assert b"\nBcc:" not in got and user.bcc_address.encode() not in got


def test_compose_then_the_sync_of_the_sent_folder_is_one_message(any_world: ComposeWorld,
                                                                  user: Mailuser) -> None:
    with any_world.api(user.token) as api:
        r = api.post("/messages", json={"to": ["dana@client.test"], "subject": "Order two",
                                        "html": "<p>Hello Dana</p>"})
        assert r.status_code == 201, r.text
        sent = r.json()
        mid = f"<{sent['message_id']}>"
        wait_for(lambda: mid in any_world.dovecot.message_ids(user.email, "Sent"))
        any_world.srv.cli("imap", "sync", "--account", str(user.mailbox_id), "--once")
        _only_message(api, sent, ["compose", "imap"])
    assert any_world.dovecot.message_ids(user.email, "Sent") == [mid]


def test_bcc_copy_arriving_while_the_send_is_queued_is_the_same_message(
        any_world: ComposeWorld, user: Mailuser) -> None:
    """Dana's server defers (450): the message goes to the Smart Bcc address at once — its
    copy arrives while the send is queued for Dana — and to Dana on a retry."""
    any_world.submission.defer("dana@client.test")
    with any_world.api(user.token) as api:
        r = api.post("/messages", json={"to": ["dana@client.test"], "bcc": [user.bcc_address],
                                        "subject": "Order three", "text": "Hello again"})
        assert r.status_code == 202, r.text
        sent = r.json()
        assert sent["status"] == "queued" and "450" in sent["reason"] and sent["id"]
        _only_message(api, sent, ["compose", "bcc"])
        assert any_world.received(sent["message_id"], timeout=1) == []
        any_world.submission.clear_refusals()
        [got] = wait_for(lambda: any_world.received(sent["message_id"], timeout=0), timeout=60)
        assert b"Hello again" in got
        [hook] = wait_for(lambda: [e for e in any_world.hook_events("message.sent")
                                   if e["data"]["message_id"] == sent["message_id"]], timeout=60)
        _only_message(api, sent, ["compose", "bcc"])
    assert hook["data"]["status"] == "sent" and hook["data"]["attempts"] >= 2
    assert sorted(hook["data"]["accepted"]) == sorted(["dana@client.test", user.bcc_address])
    assert len(any_world.received(sent["message_id"], timeout=0)) == 1  # Dana got it once
