"""``POST /api/v1/messages`` (SPEC §12) against the real parts: a Postfix submission
service with SASL through Dovecot as the user's mailbox, relaying into a capture server;
Dovecot's sent folder read with a real IMAP client; the message received checked byte
for byte — headers, parts, cid references, threading headers."""

from __future__ import annotations

import base64
import email
import email.policy
import re

import pytest

from tests.support.compose_world import ComposeWorld, Mailuser, strip_relay_headers, wait_for
from tests.support.mail import make_message

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("compose_api")]

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _parts(raw: bytes) -> list[email.message.EmailMessage]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return list(msg.walk())  # type: ignore[arg-type]


def test_html_with_inline_image_and_attachment_is_sent_filed_and_in_sent(
        world: ComposeWorld, alice: Mailuser) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = {"to": ["Dana Client <dana@client.test>"], "subject": "Our offer — café",
            "html": f'<p>Hello <b>Dana</b>,</p><p><img src="{data_uri}" alt="logo"></p>'
                    '<ul><li>one</li></ul><a href="https://example.com/offer">offer</a>'
                    '<script>alert(1)</script><img src="x" onerror="alert(2)">',
            "attachments": [{"filename": "offer.pdf", "content_type": "application/pdf",
                             "content_base64": base64.b64encode(b"%PDF-1.4 offer").decode()}]}
    with world.api(alice.token) as api:
        r = api.post("/messages", json=body)
        assert r.status_code == 201, r.text
        sent = r.json()
        assert sent["status"] == "sent" and sent["id"] and sent["thread_id"]
        assert re.fullmatch(r"[0-9a-f]+\.[0-9]+@mail\.test", sent["message_id"])
        [got] = world.received(sent["message_id"])
        raw = api.get(f"/messages/{sent['id']}/raw").content
        thread = api.get(f"/threads/{sent['thread_id']}").json()
    # what the counterpart received is, after the relay's Received field, exactly what
    # bccd filed (no Bcc here): the same bytes
    assert strip_relay_headers(got) == raw
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert msg["From"] == f"Alice <{alice.email}>"
    assert msg["To"] == "Dana Client <dana@client.test>"
    assert msg["Subject"] == "Our offer — café"
    assert msg["Message-ID"] == f"<{sent['message_id']}>" and msg["Date"]
    assert msg.get_content_type() == "multipart/mixed"
    types = [p.get_content_type() for p in msg.walk()]
    assert types == ["multipart/mixed", "multipart/alternative", "text/plain", "multipart/related",
                     "text/html", "image/png", "application/pdf"]
    parts = {p.get_content_type(): p for p in msg.walk()}
    html = parts["text/html"].get_content()
    cid = parts["image/png"]["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html and cid.endswith("@mail.test")
    assert parts["image/png"].get_content() == PNG
    assert "<script" not in html and "onerror" not in html and "alert" not in html
    assert '<a href="https://example.com/offer">offer</a>' in html
    text = parts["text/plain"].get_content()
    assert "Hello Dana," in text and "* one" in text and "https://example.com/offer" in text
    assert parts["application/pdf"].get_content() == b"%PDF-1.4 offer"
    assert parts["application/pdf"].get_filename() == "offer.pdf"
    # filed at once as the user's outgoing mail, from compose, linked to Dana
    [m] = thread["messages"]
    assert m["sources"] == ["compose"] and m["direction"] == "outgoing"
    assert m["message_id"] == sent["message_id"]
    assert ("person", world.ids["dana"]) in {(lk["kind"], lk["id"]) for lk in thread["links"]}
    # appended to the mailbox's sent folder, once, seen
    mid = f"<{sent['message_id']}>"
    wait_for(lambda: mid in world.dovecot.message_ids(alice.email, "Sent"))
    assert world.dovecot.message_ids(alice.email, "Sent") == [mid]
    [copy] = world.dovecot.fetch_all(alice.email, "Sent")
    assert copy == raw
    # the webhook says so
    [hook] = wait_for(lambda: [e for e in world.hook_events("message.sent")
                               if e["data"]["message_id"] == sent["message_id"]])
    assert hook["data"]["status"] == "sent" and hook["data"]["id"] == sent["id"]
    assert hook["data"]["accepted"] == ["dana@client.test"] and hook["data"]["user"] == alice.email


def _incoming(world: ComposeWorld, user: Mailuser, subject: str, **kw: object) -> dict:
    """An incoming message from Dana, delivered to the user's INBOX and synced."""
    raw = make_message(frm="Dana Client <dana@client.test>", to=user.email, subject=subject,
                       body="Can you quote?\nThanks, Dana\n", **kw)  # type: ignore[arg-type]
    world.dovecot.append(user.email, raw, "INBOX")
    world.srv.cli("imap", "sync", "--account", str(user.mailbox_id), "--once")
    with world.api(user.token) as api:
        [t] = api.get("/threads", params={"q": subject}).json()["threads"]
        return dict(api.get(f"/threads/{t['thread_id']}").json()["messages"][-1], thread_id=t["thread_id"])


def test_reply_has_the_threading_headers_the_quote_and_joins_the_thread(
        world: ComposeWorld, alice: Mailuser) -> None:
    orig = _incoming(world, alice, "Quote #42", message_id="<q42@client.test>",
                     references="<root@client.test>", in_reply_to="<root@client.test>")
    with world.api(alice.token) as api:
        r = api.post("/messages", json={"to": ["dana@client.test"], "reply_to": orig["id"],
                                        "html": "<p>Sure, here it is.</p>"})
        assert r.status_code == 201, r.text
        sent = r.json()
        # the same by the RFC Message-ID
        r2 = api.post("/messages", json={"to": ["dana@client.test"], "reply_to": "<q42@client.test>",
                                         "text": "And a second thought.", "signature": False})
        assert r2.status_code == 201, r2.text
        thread = api.get(f"/threads/{orig['thread_id']}").json()
    assert sent["thread_id"] == r2.json()["thread_id"] == orig["thread_id"]
    assert [m["subject"] for m in thread["messages"]][1:] == ["Re: Quote #42", "Re: Quote #42"]
    [got] = world.received(sent["message_id"])
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert msg["Subject"] == "Re: Quote #42"
    assert msg["In-Reply-To"] == "<q42@client.test>"
    assert msg["References"] == "<root@client.test> <q42@client.test>"
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "Sure, here it is." in html and "Dana Client &lt;dana@client.test&gt; wrote:" in html
    assert "<blockquote" in html and "Can you quote?" in html
    assert "Sure, here it is." in text and "Can you quote?" in text
    [got2] = world.received(r2.json()["message_id"])
    plain = email.message_from_bytes(got2, policy=email.policy.default)
    assert plain.get_content_type() == "text/plain"
    body = plain.get_content().replace("\r\n", "\n")
    assert body.startswith("And a second thought.\n") and "> Can you quote?\n" in body


def test_forward_carries_the_original_below_and_its_attachments(world: ComposeWorld,
                                                                alice: Mailuser) -> None:
    orig = _incoming(world, alice, "Spec sheet", message_id="<spec@client.test>",
                     attachments=[("spec.pdf", "application/pdf", b"%PDF-1.4 spec")])
    with world.api(alice.token) as api:
        r = api.post("/messages", json={"to": ["finn@other-client.test"], "forward_of": orig["id"],
                                        "html": "<p>FYI</p>"})
        assert r.status_code == 201, r.text
        sent = r.json()
    [got] = world.received(sent["message_id"])
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert msg["Subject"] == "Fwd: Spec sheet" and msg["References"] == "<spec@client.test>"
    assert msg["In-Reply-To"] is None
    html = msg.get_body(("html",)).get_content()
    assert "FYI" in html and "Forwarded message" in html and "Can you quote?" in html
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "spec.pdf" and att.get_content() == b"%PDF-1.4 spec"
    assert sent["thread_id"] == orig["thread_id"]  # it References the original


def test_a_template_used_from_a_deal_fills_its_person_organization_and_deal(
        world: ComposeWorld, alice: Mailuser) -> None:
    tpl = {"name": "Offer", "subject": "Offer for {{organization.name}}",
           "html": '<p>Hi {{person.first_name | default("there")}}, {{deal.title}} is '
                   '{{deal.value}}.</p><p>{{user.name}}</p>'}
    with world.api(alice.token) as api:
        r = api.post("/me/templates", json=tpl)
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        filled = api.post(f"/me/templates/{tid}/render", json={"deal_id": world.ids["deal"]}).json()
        assert filled["subject"] == "Offer for Client Co"
        assert filled["html"] == "<p>Hi Dana, Big deal is 12,000 EUR.</p><p>Alice</p>"
        assert "Hi Dana, Big deal is 12,000 EUR." in filled["text"]
        empty = api.post(f"/me/templates/{tid}/render", json={}).json()
        assert empty == {"subject": "Offer for ", "html": "<p>Hi there,  is .</p><p>Alice</p>",
                         "text": "Hi there, is .\n\nAlice\n"}
        r = api.post("/messages", json={"to": ["dana@client.test"], "template_id": tid,
                                        "deal_id": world.ids["deal"]})
        assert r.status_code == 201, r.text
        sent = r.json()
        thread = api.get(f"/threads/{sent['thread_id']}").json()
    [got] = world.received(sent["message_id"])
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert msg["Subject"] == "Offer for Client Co"
    assert "Hi Dana, Big deal is 12,000 EUR." in msg.get_body(("html",)).get_content()
    assert {(lk["kind"], lk["id"], lk["how"]) for lk in thread["links"]} >= {
        ("deal", world.ids["deal"], "manual"), ("person", world.ids["dana"], "auto")}


def test_templates_are_checked_at_save_and_only_admins_share(world: ComposeWorld,
                                                             alice: Mailuser) -> None:
    with world.api(alice.token) as api:
        r = api.post("/me/templates", json={"name": "Bad", "html": "<p>{{person.age}}</p>"})
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
        assert "person.age" in r.json()["detail"] and r.json()["detail"].startswith("html:")
        r = api.post("/me/templates", json={"name": "Bad", "subject": "{% if x %}y{% endif %}"})
        assert r.status_code == 400 and r.json()["detail"].startswith("subject:")
        r = api.post("/me/templates", json={"name": "Mine", "html": "x", "shared": True})
        assert r.status_code == 403
    with world.api() as boss:
        shared = boss.post("/me/templates", json={"name": "Company intro", "shared": True,
                                                  "html": "<p>Hello {{person.name}}</p>"}).json()
        private = boss.post("/me/templates", json={"name": "Boss only", "html": "<p>x</p>"}).json()
    with world.api(alice.token) as api:
        names = [t["name"] for t in api.get("/me/templates").json()]
        assert "Company intro" in names and "Boss only" not in names
        assert api.delete(f"/me/templates/{shared['id']}").status_code == 403
        assert api.patch(f"/me/templates/{private['id']}", json={"name": "x"}).status_code == 404
        r = api.post("/messages", json={"to": ["dana@client.test"], "template_id": private["id"]})
        assert r.status_code == 422 and r.json()["detail"] == f"template_id: no template {private['id']}"


def test_a_permanent_refusal_is_422_with_the_servers_words_and_nothing_is_filed(
        world: ComposeWorld, alice: Mailuser) -> None:
    world.submission.refuse("nobody@client.test", "550 5.1.1 No such user here")
    body = {"to": ["Nobody <nobody@client.test>"], "subject": "Refused one", "text": "x"}
    with world.api(alice.token) as api:
        r = api.post("/messages", json=body, headers={"Idempotency-Key": "refused-1"})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert "550 5.1.1" in problem["detail"] and "No such user here" in problem["detail"]
        assert problem["errors"][0]["loc"] == ["to", "0"]
        again = api.post("/messages", json=body, headers={"Idempotency-Key": "refused-1"})
        assert again.status_code == 422 and again.json() == problem
        assert api.get("/threads", params={"q": "Refused one"}).json()["threads"] == []
    # the right to erasure reaches the record of the refused send too
    erased = world.srv.cli("erase", "nobody@client.test", "--company", "acme")
    assert erased["removed"]["sends"] == 1, erased


def test_an_idempotency_key_returns_the_first_answer_and_never_sends_twice(
        world: ComposeWorld, alice: Mailuser) -> None:
    body = {"to": ["dana@client.test"], "subject": "Once only", "text": "x"}
    with world.api(alice.token) as api:
        first = api.post("/messages", json=body, headers={"Idempotency-Key": "once-1"})
        second = api.post("/messages", json=body, headers={"Idempotency-Key": "once-1"})
        other = api.post("/messages", json={**body, "text": "y"}, headers={"Idempotency-Key": "once-1"})
        threads = api.get("/threads", params={"q": "Once only"}).json()["threads"]
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert other.status_code == 422 and other.json()["detail"].startswith("Idempotency-Key:")
    assert len(world.received(first.json()["message_id"])) == 1
    world.capture.settle(1.0)
    assert len(world.received(first.json()["message_id"], timeout=0)) == 1
    assert len(threads) == 1 and threads[0]["messages"] == 1


@pytest.mark.parametrize(("body", "status", "detail"), [
    ({"to": ["bob@"]}, 422, "to[0]: 'bob@' is not an email address"),
    ({"to": ["dana@client.test"], "cc": ["ok@x.test", "Bob <bob@x.test"]}, 422,
     "cc[1]: 'Bob <bob@x.test' is not an email address"),
    ({"to": ["dana@client.test"], "template_id": 987654}, 422, "template_id: no template 987654"),
    ({"to": ["dana@client.test"], "reply_to": 987654}, 422, "reply_to: no message '987654' that you can see"),
    ({"to": ["dana@client.test"], "deal_id": 987654}, 422, "deal_id: no deal 987654"),
    ({"to": ["dana@client.test"], "text": "x"}, 422, "subject: required"),
    ({"to": ["dana@client.test"], "track_opens": True}, 422, "track_opens:"),
    ({"to": ["dana@client.test"], "attachments": [{"filename": "a", "content_base64": "*"}]}, 422,
     "attachments.0.content_base64: not valid base64"),
    ({"to": ["dana@client.test"], "attachments": [{"filename": "big.bin", "content_base64":
      base64.b64encode(b"x" * (3 * 1024 * 1024 + 1)).decode()}]}, 422,
     "attachments.0: the attachments come to more than 2.2 MiB, the most a message of 3.0 MiB can carry"),
    ({"to": ["dana@client.test"], "attachments": [{"filename": "big.bin", "content_base64":
      base64.b64encode(b"x" * (2 * 1024 * 1024)).decode()}],
      "html": "<p>" + "y" * (700 * 1024) + "</p>"}, 422, "attachments: the message would be"),
])
def test_bad_input_is_a_problem_naming_the_field_and_nothing_is_sent(
        world: ComposeWorld, alice: Mailuser, body: dict, status: int, detail: str) -> None:
    body = {"subject": "Bad input", **body} if "subject: required" not in detail else body
    before = len(world.capture.messages)
    with world.api(alice.token) as api:
        r = api.post("/messages", json=body)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"].startswith(detail), r.json()
        assert api.get("/threads", params={"q": "Bad input"}).json()["threads"] == []
    assert len(world.capture.messages) == before


def test_a_body_over_the_routes_limit_is_413(world: ComposeWorld, alice: Mailuser) -> None:
    with world.api(alice.token) as api:
        r = api.post("/messages", content=b"{" + b" " * (6 * 1024 * 1024) + b"}",
                     headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_no_mailbox_that_can_send_is_409(world: ComposeWorld) -> None:
    nobody = world.user("nomailbox", mailbox=False)
    with world.api(nobody.token) as api:
        r = api.post("/messages", json={"to": ["dana@client.test"], "subject": "x", "text": "x"})
    assert r.status_code == 409 and "no mailbox that can send" in r.json()["detail"]


def test_a_mailbox_whose_password_stopped_working_is_409_naming_it(world: ComposeWorld) -> None:
    broken = world.user("broken", password="not-the-password")
    with world.api(broken.token) as api:
        body = {"to": ["dana@client.test"], "subject": "Wrong password", "text": "x"}
        r = api.post("/messages", json=body, headers={"Idempotency-Key": "pw-1"})
        assert r.status_code == 409, r.text
        detail = r.json()["detail"]
        assert detail.startswith(f"from_mailbox: mailbox {broken.mailbox_id} ({broken.email}) cannot send")
        assert "refused the login: 535" in detail
        assert api.get("/threads", params={"q": "Wrong password"}).json()["threads"] == []
        # nothing was kept: the same key may be used again once the mailbox works
        assert api.post("/messages", json=body, headers={"Idempotency-Key": "pw-1"}).status_code == 409
