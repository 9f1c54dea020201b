"""Attack: widen who may read a shared thread by removing the link that kept it narrow
(issue #17 item 10; SPEC §9: only a thread's owner may remove a link whose removal would
widen who can see the thread).

A shared thread is visible to a colleague only if they may see every linked entity, so a
link to an owner-only entity keeps the thread from the rest of the company. Any viewer —
an admin (who sees every entity) or the colleague who owns that entity — could unlink it
(or, for a deal, link another one in its place) and so show the thread to everyone. Tried
over the JSON API and the Mail page; the owner, and the operator's CLI, still may."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.security.two_companies import Companies, csrf_of
from tests.support.linking_world import server_on
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("9")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BccdServer]:
    with server_on("sqlite", tmp_path_factory.mktemp("unlink")) as server:
        yield server


@dataclass
class Scene:
    c: Companies
    secret_thread: int   # alice's, linked to Finn (company) and her owner-only deal
    pat_thread: int      # alice's, linked to bob's owner-only person Pat and a company deal


@pytest.fixture
def scene(srv: BccdServer) -> Scene:
    c = Companies(srv, "unlink")
    c.user_dave = dict(srv.cli("user", "create", c.email("dave"), "--company", c.slugs["acme"]))  # type: ignore[attr-defined]
    c.users["dave"] = c.user_dave  # type: ignore[attr-defined]
    c.person("finn", "Finn Client", "finn@client.test")
    c.item("secret", "deal", "Alice Secret Deal", person="finn", owner="alice",
           visible_to="owner")
    c.item("open", "deal", "Company Deal")
    c.person("pat", "Pat Private", "pat@client.test", owner="bob", visible_to="owner")
    c.item("pat_deal", "deal", "Pat Deal", person="pat")
    c.share("alice")
    secret_thread = c.mail("alice", "finn@client.test", "Secret negotiation")
    pat_thread = c.mail("alice", "pat@client.test", "Pat's renewal")
    with c.api("alice") as api:
        links = {(lk["kind"], lk["id"]) for lk in api.get(f"/threads/{secret_thread}").json()["links"]}
        assert ("deal", c.ids["secret"]) in links, links
        links = {(lk["kind"], lk["id"]) for lk in api.get(f"/threads/{pat_thread}").json()["links"]}
        assert {("person", c.ids["pat"]), ("deal", c.ids["pat_deal"])} <= links, links
    return Scene(c, secret_thread, pat_thread)


def _sees(c: Companies, who: str, thread: int) -> bool:
    with c.api(who) as api:
        return api.get(f"/threads/{thread}").status_code == 200


def test_admin_cannot_unlink_an_owner_only_deal_over_the_api(scene: Scene) -> None:
    c, tid = scene.c, scene.secret_thread
    assert _sees(c, "carol", tid) and not _sees(c, "bob", tid)
    with c.api("carol") as api:
        r = api.delete(f"/threads/{tid}/links/deal/{c.ids['secret']}")
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "only the owner" in r.json()["detail"]
        # nor by linking another deal in its place (a thread has one deal)
        r = api.post(f"/threads/{tid}/links", json={"kind": "deal", "id": c.ids["open"]})
        assert r.status_code == 403, r.text
    assert not _sees(c, "bob", tid)
    with c.api("alice") as api:
        links = {(lk["kind"], lk["id"]) for lk in api.get(f"/threads/{tid}").json()["links"]}
        assert ("deal", c.ids["secret"]) in links


def test_admin_cannot_unlink_an_owner_only_deal_on_the_mail_page(scene: Scene) -> None:
    c, tid = scene.c, scene.secret_thread
    with c.page("carol") as http:
        page = http.get(f"/mail/threads/{tid}")
        assert page.status_code == 200
        # no unlink button is offered for it (a company-visible link keeps its button)
        assert f'name="ref" value="deal:{c.ids["secret"]}"' not in page.text
        assert f'name="ref" value="person:{c.ids["finn"]}"' in page.text
        r = http.post(f"/mail/threads/{tid}/unlink",
                      data={"ref": f"deal:{c.ids['secret']}", "csrf": csrf_of(page.text)})
        assert r.status_code == 403, r.text
        assert "only the owner" in r.text
    assert not _sees(c, "bob", tid)


def test_colleague_cannot_unlink_the_owner_only_person_that_narrows_a_thread(scene: Scene) -> None:
    c, tid = scene.c, scene.pat_thread
    assert _sees(c, "bob", tid) and not _sees(c, "dave", tid)
    with c.api("bob") as api:
        r = api.delete(f"/threads/{tid}/links/person/{c.ids['pat']}")
        assert r.status_code == 403, r.text
        assert "only the owner" in r.json()["detail"]
    with c.page("bob") as http:
        page = http.get(f"/mail/threads/{tid}")
        r = http.post(f"/mail/threads/{tid}/unlink",
                      data={"ref": f"person:{c.ids['pat']}", "csrf": csrf_of(page.text)})
        assert r.status_code == 403 and "only the owner" in r.text
    assert not _sees(c, "dave", tid)


def test_links_that_do_not_narrow_may_be_removed_by_any_viewer(scene: Scene) -> None:
    c, tid = scene.c, scene.pat_thread
    with c.api("bob") as api:  # the company deal keeps nobody out: removing it widens nothing
        r = api.delete(f"/threads/{tid}/links/deal/{c.ids['pat_deal']}")
        assert r.status_code == 200, r.text
    assert not _sees(c, "dave", tid)


def test_the_owner_and_the_operator_may_remove_a_narrowing_link(scene: Scene) -> None:
    c = scene.c
    with c.api("alice") as api:
        r = api.delete(f"/threads/{scene.secret_thread}/links/deal/{c.ids['secret']}")
        assert r.status_code == 200, r.text
    assert _sees(c, "bob", scene.secret_thread)  # her choice: the thread is now the company's
    out = c.srv.cli("mail", "unlink", str(scene.pat_thread), "--person", str(c.ids["pat"]))
    assert ("person", c.ids["pat"]) not in {(lk["kind"], lk["id"]) for lk in out["links"]}
