"""SPEC §9 webhooks end to end: ``message.stored``, ``message.quarantined`` and
``thread.linked`` (with the thread's ``link_state``) posted from the durable outbox to a
loopback receiver, signed in the Standard Webhooks format, retried after a refused first
delivery with the same id and body, and visible to admins with their delivery state."""

from __future__ import annotations

import base64
import secrets

import httpx
import pytest

from tests.support.mail import make_message, send
from tests.support.wait import wait_until
from tests.support.web_hooks import Receiver, verify

pytestmark = [pytest.mark.xdist_group("web_webhooks"),  # one world per module
              pytest.mark.spec("9")]


def test_events_are_signed_retried_and_visible(make_server) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with Receiver(script=[503]) as hook:
        srv = make_server({"webhooks": {"url": hook.url, "secret": secret},
                           "auth": {"unverified": "quarantine"}})
        alice = srv.setup_user()
        carol = srv.setup_user("carol@acme.test", name="Carol", admin=True)
        api = httpx.Client(base_url=f"{srv.http_url}/api/v1", timeout=20,
                           headers={"Authorization": f"Bearer {carol['api_token']}"})
        as_alice = {"Authorization": f"Bearer {alice['api_token']}"}
        with api:
            api.put("/admin/persons/p-dana", json={"name": "Dana", "emails": ["dana@client.test"]})
            big = api.put("/admin/deals/d-big", json={"title": "Big", "person_external_id": "p-dana"}).json()
            other = api.put("/admin/deals/d-other", json={"title": "Other"}).json()
            raw = make_message(to="dana@client.test", subject="Offer", message_id="<offer@acme.test>")
            assert send(srv.smtp_port, alice["bcc_address"], raw)[0] == 250
            held = make_message(frm="alice@home.test", subject="From home", message_id="<home@home.test>")
            assert send(srv.smtp_port, alice["bcc_address"], held, mail_from="alice@home.test")[0] == 250
            [t] = api.get("/threads", headers=as_alice).json()["threads"]
            r = api.post(f"/threads/{t['thread_id']}/links", json={"kind": "deal", "id": other["id"]},
                         headers=as_alice)
            assert r.status_code == 200
            # relinking the same deal is no new event
            api.post(f"/threads/{t['thread_id']}/links", json={"kind": "deal", "id": other["id"]},
                     headers=as_alice)

            events = wait_until(lambda: (len(hook.delivered()) >= 4 and hook.delivered()), timeout=20)
            by_type: dict[str, list] = {}
            for h in events:
                by_type.setdefault(h.event()["type"], []).append(h.event())
            assert sorted(by_type) == ["message.quarantined", "message.stored", "thread.linked"]
            [stored] = by_type["message.stored"]
            assert stored["data"]["thread_id"] == t["thread_id"]
            assert stored["data"]["rfc822_message_id"] == "offer@acme.test"
            assert stored["data"]["user"] == "alice@acme.test" and stored["data"]["company"] == "acme"
            assert {"kind": "deal", "id": big["id"], "how": "auto"} in stored["data"]["links"]
            [quarantined] = by_type["message.quarantined"]
            assert quarantined["data"]["from"] == "alice@home.test"
            assert quarantined["data"]["subject"] == "From home"
            links = sorted((e["data"]["link"]["id"], e["data"]["link"]["how"]) for e in by_type["thread.linked"])
            assert links == sorted([(big["id"], "auto"), (other["id"], "manual")])
            # SPEC §9: the thread's link_state (§5.12) once the link is made
            assert {e["data"]["link_state"] for e in by_type["thread.linked"]} == {"linked"}

            # every request is signed; the refused first one came again, same id and body
            assert all(verify(secret, h) for h in hook.hits)
            assert not verify("whsec_" + base64.b64encode(b"x" * 32).decode(), hook.hits[0])
            first = hook.hits[0]
            assert first.status == 503
            again = [h for h in hook.hits if h.id == first.id]
            assert [h.status for h in again] == [503, 204]
            assert again[1].body == first.body and again[1].at - first.at >= 1.0
            assert len({h.id for h in hook.delivered()}) == len(hook.delivered()) == 4
            assert all(h.id.startswith("msg_") and h.headers["content-type"] == "application/json"
                       for h in hook.hits)

            def all_done():
                rows = [d for d in api.get("/admin/webhooks/deliveries").json() if d["state"] == "done"]
                return rows if len(rows) == 4 else None

            deliveries = wait_until(all_done, timeout=20)
            assert {d["webhook_id"] for d in deliveries} == {h.id for h in hook.delivered()}
            retried = next(d for d in deliveries if d["webhook_id"] == first.id)
            assert retried["attempts"] == 2 and retried["done_at"] and retried["last_error"] == ""
            assert api.get("/admin/webhooks/deliveries", params={"state": "failed"}).json() == []
            r = api.get("/admin/webhooks/deliveries", headers=as_alice)
            assert r.status_code == 403


def test_a_receiver_that_keeps_refusing_leaves_the_delivery_pending_with_its_reason(make_server) -> None:
    with Receiver(script=[500] * 50) as hook:
        srv = make_server({"webhooks": {"url": hook.url, "secret": "raw-secret"}})
        alice = srv.setup_user()
        carol = srv.setup_user("carol@acme.test", name="Carol", admin=True)
        raw = make_message(to="x@client.test", message_id="<x@acme.test>")
        assert send(srv.smtp_port, alice["bcc_address"], raw)[0] == 250
        wait_until(lambda: len(hook.hits) >= 2, timeout=15)
        assert verify("raw-secret", hook.hits[0])
        with httpx.Client(base_url=f"{srv.http_url}/api/v1", timeout=10,
                          headers={"Authorization": f"Bearer {carol['api_token']}"}) as api:
            [d] = wait_until(lambda: [d for d in api.get("/admin/webhooks/deliveries").json()
                                      if d["attempts"] >= 2], timeout=20)
        assert d["type"] == "message.stored" and d["state"] == "pending"
        assert d["last_error"] == "DeliveryFailed: receiver answered 500"
        assert d["next_attempt_at"]
        assert len({h.id for h in hook.hits}) == 1


def test_a_link_made_from_the_command_line_is_posted_by_the_server(make_server) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with Receiver() as hook:
        srv = make_server({"webhooks": {"url": hook.url, "secret": secret}})
        alice = srv.setup_user()
        deal = srv.cli("deal", "create", "--company", "acme", "--title", "Renewal")
        raw = make_message(to="erin@client.test", subject="Hello", message_id="<cli-link@acme.test>")
        assert send(srv.smtp_port, alice["bcc_address"], raw)[0] == 250
        [t] = srv.cli("mail", "list", "alice@acme.test")
        srv.cli("mail", "link", str(t["thread_id"]), "--deal", str(deal["id"]), "--as", "alice@acme.test")

        def linked():
            return [h.event() for h in hook.delivered() if h.event()["type"] == "thread.linked"]

        [event] = wait_until(linked, timeout=20)
        assert event["data"]["thread_id"] == t["thread_id"]
        assert (event["data"]["link"]["kind"], event["data"]["link"]["id"], event["data"]["link"]["how"]) == \
            ("deal", deal["id"], "manual")
        assert all(verify(secret, h) for h in hook.hits)


def test_a_person_linked_from_the_command_line_is_a_thread_linked_event_like_from_the_api(
        make_server) -> None:
    """Manual links emit ``thread.linked`` from one place (``linking.manual``): a person or
    organization linked by ``mail link`` is posted as when linked through the API."""
    with Receiver() as hook:
        srv = make_server({"webhooks": {"url": hook.url}})
        alice = srv.setup_user()
        person = srv.cli("person", "create", "--company", "acme", "--name", "Frank",
                         "--email", "frank@elsewhere.test")
        raw = make_message(to="erin@client.test", subject="Hi", message_id="<cli-person@acme.test>")
        assert send(srv.smtp_port, alice["bcc_address"], raw)[0] == 250
        [t] = srv.cli("mail", "list", "alice@acme.test")
        srv.cli("mail", "link", str(t["thread_id"]), "--person", str(person["id"]))

        def linked():
            return [h.event() for h in hook.delivered() if h.event()["type"] == "thread.linked"]

        [event] = wait_until(linked)
        assert event["data"]["link"] == {"kind": "person", "id": person["id"], "how": "manual"}
        # Frank has no open item: the state the rule left the thread in
        assert event["data"]["link_state"] == "no_open_item"
