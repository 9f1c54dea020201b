"""SPEC §1/§5.8 through the HTTP API, for two users of one company, an admin and a user
of another company: every listing and every single read goes through the one visibility
rule, and a thread (message, attachment) someone may not see answers exactly like one
that does not exist."""

from __future__ import annotations

import pytest

from tests.support.web_world import World

pytestmark = [pytest.mark.xdist_group("web_visibility"),  # one world per module
              pytest.mark.spec("1"),
              pytest.mark.spec("5.8"),
              pytest.mark.spec("9")]


def _ids(http, **params) -> set[int]:
    r = http.get("/threads", params=params)
    assert r.status_code == 200, r.text
    return {t["thread_id"] for t in r.json()["threads"]}


def _refs(world: World) -> dict[str, int]:
    with world.client("alice") as alice:
        [m] = alice.get(f"/threads/{world.threads['private']}").json()["messages"]
    return {"message": m["id"], "attachment": m["attachments"][0]["id"]}


def test_listings_follow_the_visibility_rule(world: World) -> None:
    th = world.threads
    with world.client("alice") as alice, world.client("bob") as bob, \
            world.client("carol") as carol, world.client("eve") as eve:
        assert _ids(alice) == {th["private"], th["shared"], th["secret"]}
        # bob: the shared thread linked to company-visible Dana and Big deal only
        assert _ids(bob) == {th["shared"]}
        # the admin sees every entity, but never another user's private thread
        assert _ids(carol) == {th["shared"], th["secret"]}
        assert _ids(eve) == set()
        # filters do not widen anything: a private deal's id reveals nothing
        assert _ids(bob, deal=world.ids["secret"]) == set()
        assert _ids(bob, person=world.ids["finn"]) == set()
        assert _ids(bob, deal=world.ids["big"]) == {th["shared"]}
        assert _ids(bob, q="Private") == set() and _ids(bob, q="Secret") == set()
        [shared] = bob.get("/threads").json()["threads"]
        assert shared["owner"] == "alice@acme.test"


def test_hidden_threads_answer_like_missing_ones(world: World) -> None:
    th, refs = world.threads, _refs(world)
    missing = {"thread": 10**9, "message": 10**9, "attachment": 10**9}
    for who, hidden in (("bob", ("private", "secret")), ("carol", ("private",)),
                        ("eve", ("private", "shared", "secret"))):
        with world.client(who) as http:
            for key in hidden:
                r = http.get(f"/threads/{th[key]}")
                gone = http.get(f"/threads/{missing['thread']}")
                assert r.status_code == gone.status_code == 404
                assert r.headers["content-type"] == gone.headers["content-type"]
                assert r.json()["detail"] == f"no thread {th[key]}"
                assert set(r.json()) == set(gone.json())
                for path in (f"/threads/{th[key]}/archive",):
                    assert http.post(path).status_code == 404
                assert http.delete(f"/threads/{th[key]}").status_code == 404
                assert http.patch(f"/threads/{th[key]}", json={"visibility": "shared"}).status_code == 404
                r = http.post(f"/threads/{th[key]}/links", json={"kind": "person", "id": world.ids["dana"]})
                assert r.status_code == 404 and r.json()["detail"] == f"no thread {th[key]}"
            if "private" in hidden:
                for kind, url in (("message", "/messages/{}/raw"), ("attachment", "/attachments/{}")):
                    r = http.get(url.format(refs[kind]))
                    gone = http.get(url.format(missing[kind]))
                    assert r.status_code == gone.status_code == 404, (who, kind)
                    assert r.json()["detail"] == f"no {kind} {refs[kind]}"
    with world.client("alice") as alice:  # nothing was changed by the refused attempts
        assert {t["thread_id"] for t in alice.get("/threads").json()["threads"]} == set(th.values())
        assert alice.get(f"/threads/{th['private']}").json()["visibility"] == "private"


def test_only_the_owner_changes_a_shared_thread_and_links_need_visible_entities(world: World) -> None:
    th = world.threads
    with world.client("bob") as bob:
        t = bob.get(f"/threads/{th['shared']}").json()
        assert t["subject"] == "Shared plan" and t["messages"][0]["text"].startswith("The shared plan")
        r = bob.patch(f"/threads/{th['shared']}", json={"visibility": "private"})
        assert r.status_code == 403 and "only the owner" in r.json()["detail"]
        assert bob.post(f"/threads/{th['shared']}/archive").status_code == 403
        assert bob.delete(f"/threads/{th['shared']}").status_code == 403
        # alice's private deal is not an entity bob may link: same answer as no deal at all
        r = bob.post(f"/threads/{th['shared']}/links", json={"kind": "deal", "id": world.ids["secret"]})
        gone = bob.post(f"/threads/{th['shared']}/links", json={"kind": "deal", "id": 10**9})
        assert r.status_code == gone.status_code == 404
        assert r.json()["detail"] == f"no deal {world.ids['secret']}"
    # alice makes the shared thread private: bob loses it at once
    with world.client("alice") as alice:
        assert alice.patch(f"/threads/{th['shared']}", json={"visibility": "private"}).status_code == 200
    with world.client("bob") as bob:
        assert _ids(bob) == set()
        assert bob.get(f"/threads/{th['shared']}").status_code == 404
    with world.client("alice") as alice:
        alice.patch(f"/threads/{th['shared']}", json={"visibility": "shared"})


def test_an_owner_only_deal_linked_by_hand_hides_the_thread_from_colleagues(world: World) -> None:
    th = world.threads
    with world.client("bob") as bob:
        assert th["shared"] in _ids(bob)
    with world.client("alice") as alice:
        r = alice.post(f"/threads/{th['shared']}/links", json={"kind": "deal", "id": world.ids["secret"]})
        assert r.status_code == 200
    with world.client("bob") as bob, world.client("carol") as carol:
        assert th["shared"] not in _ids(bob)
        assert bob.get(f"/threads/{th['shared']}").status_code == 404
        assert th["shared"] in _ids(carol)  # admins see every entity
    with world.client("alice") as alice:
        alice.post(f"/threads/{th['shared']}/links", json={"kind": "deal", "id": world.ids["big"]})
    with world.client("bob") as bob:
        assert th["shared"] in _ids(bob)
