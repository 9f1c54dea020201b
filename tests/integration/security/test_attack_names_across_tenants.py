"""Attack: read the names of another company's CRM, or of a colleague's owner-only
entities, off the Mail page and the API (issue #17 item 1; SPEC §9: every name, address
or subject shown has passed the viewer's visibility check).

The filter line (``/mail?person=ID``, ``?deal=``, ``?lead=``, ``?project=``) named any
entity by id, whatever its company; a thread's links named persons and deals its owner may
not see (a person auto-linked by address, a deal an admin linked). Each is tried over real
HTTP on SQLite and PostgreSQL; the hidden names must appear nowhere in the response —
not in text, attributes, titles or option lists — while the entity's id may."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.security.two_companies import Companies, csrf_of
from tests.support.linking_world import server_on
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("9")

HIDDEN = ("Harriet Hidden", "Bob Pipeline Secret", "Rachel Rival", "Rival Merger Plan",
          "rachel@", "Lena Rival Lead")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[BccdServer]:
    admin = request.getfixturevalue("pg_admin_url") if request.param == "postgresql" else None
    with server_on(request.param, tmp_path_factory.mktemp(request.param), admin) as server:
        yield server


@dataclass
class Scene:
    c: Companies
    thread: int      # alice's shared thread, linked to bob's hidden person and deal


@pytest.fixture(scope="module")
def scene(srv: BccdServer) -> Scene:
    c = Companies(srv, "names")
    rival = c.domains["rival"]
    c.person("rachel", "Rachel Rival", f"rachel@{rival}", "rival")
    c.item("rival_deal", "deal", "Rival Merger Plan", "rival", person="rachel")
    c.item("rival_lead", "lead", "Lena Rival Lead", "rival")
    c.person("harriet", "Harriet Hidden", "harriet@client.test", owner="bob",
             visible_to="owner")
    c.item("bob_secret", "deal", "Bob Pipeline Secret", owner="bob", visible_to="owner")
    c.person("dana", "Dana Visible", "dana@client.test")
    c.share("alice")
    # alice's own mail to an address that is bob's owner-only person: linked by address
    thread = c.mail("alice", "harriet@client.test", "Quarterly check-in")
    with c.api("carol") as carol:  # an admin links bob's owner-only deal to alice's thread
        r = carol.post(f"/threads/{thread}/links", json={"kind": "deal", "id": c.ids["bob_secret"]})
        assert r.status_code == 200, r.text
    return Scene(c, thread)


def _clean(text: str) -> list[str]:
    return [name for name in HIDDEN if name in text]


def test_filter_line_names_no_entity_of_another_company(scene: Scene) -> None:
    c = scene.c
    with c.page("alice") as http:
        for kind, key in (("person", "rachel"), ("deal", "rival_deal"), ("lead", "rival_lead")):
            r = http.get("/mail", params={kind: c.ids[key]})
            assert r.status_code == 200
            assert _clean(r.text) == [], (kind, r.text)
            assert f'name="{kind}" value="{c.ids[key]}"' in r.text  # shown by id alone
    with c.page("eve") as http:
        for kind, key in (("person", "harriet"), ("deal", "bob_secret"), ("person", "dana")):
            r = http.get("/mail", params={kind: c.ids[key]})
            assert r.status_code == 200
            assert _clean(r.text) == [] and "Dana Visible" not in r.text, (kind, r.text)


def test_filter_line_names_no_owner_only_entity_of_a_colleague(scene: Scene) -> None:
    c = scene.c
    with c.page("alice") as http:
        r = http.get("/mail", params={"deal": c.ids["bob_secret"]})
        assert r.status_code == 200 and _clean(r.text) == [], r.text
        r = http.get("/mail", params={"person": c.ids["harriet"]})
        assert r.status_code == 200 and _clean(r.text) == [], r.text
        assert "Quarterly check-in" in r.text  # her own thread is still listed
        r = http.get("/mail", params={"person": c.ids["dana"]})
        assert "Dana Visible" in r.text  # an entity she may see is named


def test_thread_links_name_no_entity_the_owner_may_not_see(scene: Scene) -> None:
    c, tid = scene.c, scene.thread
    with c.page("alice") as http:
        listing = http.get("/mail")
        assert "Quarterly check-in" in listing.text and _clean(listing.text) == [], listing.text
        page = http.get(f"/mail/threads/{tid}")
        assert page.status_code == 200 and _clean(page.text) == [], page.text
        assert f'data-id="{c.ids["bob_secret"]}"' in page.text  # the link, by id alone
        # a change answers with the thread as she may see it
        r = http.post(f"/mail/threads/{tid}/link",
                      data={"ref": f"person:{c.ids['dana']}", "csrf": csrf_of(page.text)})
        assert r.status_code == 303
        after = http.get(r.headers["location"])
        assert "Dana Visible" in after.text and _clean(after.text) == [], after.text
    with c.api("alice") as api:
        for path in ("/threads", f"/threads/{tid}", f"/threads?person={c.ids['harriet']}",
                     f"/threads?deal={c.ids['bob_secret']}", f"/threads?person={c.ids['rachel']}"):
            r = api.get(path)
            assert r.status_code == 200 and _clean(r.text) == [], (path, r.text)
        detail = api.get(f"/threads/{tid}").json()
        named = {(lk["kind"], lk["id"]): lk["name"] for lk in detail["links"]}
        assert named[("deal", c.ids["bob_secret"])] is None
        assert named[("person", c.ids["harriet"])] is None
        assert named[("person", c.ids["dana"])] == "Dana Visible"
        r = api.delete(f"/threads/{tid}/links/person/{c.ids['dana']}")
        assert r.status_code == 200 and _clean(r.text) == [], r.text


def test_who_may_see_the_entities_still_gets_their_names(scene: Scene) -> None:
    c, tid = scene.c, scene.thread
    with c.api("bob") as api:  # bob owns the hidden person and deal: he sees the thread
        detail = api.get(f"/threads/{tid}").json()
        names = {lk["name"] for lk in detail["links"]}
        assert {"Harriet Hidden", "Bob Pipeline Secret"} <= names
    with c.page("carol") as http:  # an admin sees every entity of her company
        page = http.get(f"/mail/threads/{tid}")
        assert "Harriet Hidden" in page.text and "Bob Pipeline Secret" in page.text
        r = http.get("/mail", params={"person": c.ids["rachel"]})
        assert _clean(r.text) == [], r.text  # but never another company's
