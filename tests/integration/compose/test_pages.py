"""The compose form over plain HTTP (no browser): the same draft posted twice — a double
click, a reload of the POST — is sent once, and the form refuses a forged token; the
people suggestions show only persons the user may see, to a signed-in user only."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.web.test_pages import sign_in
from tests.support.compose_world import ComposeWorld, Mailuser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("compose_pages")]


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, name
    return m.group(1)


def test_the_same_draft_posted_twice_is_sent_once(world: ComposeWorld, alice: Mailuser) -> None:
    http, _ = sign_in(world.srv.http_url, alice.token)
    try:
        form = http.get("/mail/compose", params={"to": "dana@client.test"}).text
        data = {"csrf": _field(form, "csrf"), "token": _field(form, "token"), "to": "dana@client.test",
                "subject": "Posted twice", "text": "Only once, please", "signature": "1"}
        first = http.post("/mail/compose", files={"attachments": ("", b"")}, data=data)
        second = http.post("/mail/compose", files={"attachments": ("", b"")}, data=data)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        assert "done=sent" in first.headers["location"]
        stale = http.post("/mail/compose", files={"attachments": ("", b"")},
                          data={**data, "csrf": "forged", "token": "x" * 20})
        assert stale.status_code == 403
    finally:
        http.close()
    [got] = [m for m in world.capture.messages if b"Posted twice" in m.data]
    assert b"Only once, please" in got.data


def test_people_are_suggested_by_name_or_address_and_only_those_the_user_may_see(
        world: ComposeWorld, alice: Mailuser) -> None:
    with world.api() as boss:
        boss.put("/admin/persons/p-hidden", json={"name": "Dana Hidden", "emails": ["dh@secret.test"],
                                                  "owner": "boss@mail.test", "visible_to": "owner"})
    http, _ = sign_in(world.srv.http_url, alice.token)
    try:
        assert http.get("/mail/compose/people", params={"q": "dana"}).json() == [
            {"name": "Dana Client", "email": "dana@client.test"}]
        assert http.get("/mail/compose/people", params={"q": "CLIENT.TEST"}).json()[0]["email"] == \
            "dana@client.test"
        assert http.get("/mail/compose/people", params={"q": "secret"}).json() == []
    finally:
        http.close()
    with httpx.Client(base_url=world.srv.http_url) as anon:
        assert anon.get("/mail/compose/people", params={"q": "dana"}).status_code == 401
