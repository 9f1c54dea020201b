"""SPEC §9 JSON API over real HTTP (httpx) against ``bccd serve``: the OpenAPI document,
authentication, problem details, the user's settings, threads, downloads, link actions
and the admin upserts that drive retroactive linking."""

from __future__ import annotations

import hashlib

import pytest

from tests.support.mail import make_message, send
from tests.support.web_world import World

pytestmark = [pytest.mark.xdist_group("web_api"),  # one world per module
              pytest.mark.spec("9")]

PROBLEM = "application/problem+json"


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_openapi_document_describes_the_api(world: World) -> None:
    with world.client(None) as http:
        doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert doc["servers"] == [{"url": "/api/v1"}]
    paths = doc["paths"]
    for path in ("/me", "/me/settings", "/me/alternates", "/me/blocked", "/threads",
                 "/threads/{thread_id}", "/threads/{thread_id}/links", "/messages/{message_id}/raw",
                 "/attachments/{attachment_id}", "/me/quarantine", "/me/rejections",
                 "/admin/persons/{external_id}", "/admin/deals/{external_id}",
                 "/admin/organizations/{external_id}", "/admin/users",
                 "/admin/users/{user_id}/rotate-address", "/admin/webhooks/deliveries"):
        assert path in paths, path
    assert doc["components"]["securitySchemes"]["apiToken"] == {
        "type": "http", "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["apiToken"]["description"]}
    assert "Problem" in doc["components"]["schemas"]
    assert PROBLEM in paths["/threads/{thread_id}"]["get"]["responses"]["404"]["content"]


def test_missing_invalid_and_disabled_tokens_are_401_with_a_bearer_challenge(world: World) -> None:
    with world.client(None) as http:
        r = http.get("/me")
        assert _problem(r, 401)["detail"].startswith("an API token is required")
        assert r.headers["www-authenticate"] == 'Bearer realm="bccd"'
        r = http.get("/threads", headers={"Authorization": "Bearer bccd_not-a-token"})
        _problem(r, 401)
        assert r.headers["www-authenticate"] == 'Bearer realm="bccd", error="invalid_token"'
        r = http.get("/me", headers={"Authorization": "Basic YTpi"})
        _problem(r, 401)
    dave = world.srv.setup_user("dave@acme.test", company="acme", name="Dave")
    with world.client(None) as http:
        auth = {"Authorization": f"Bearer {dave['api_token']}"}
        assert http.get("/me", headers=auth).status_code == 200
        world.srv.cli("user", "disable", "dave@acme.test")
        r = http.get("/me", headers=auth)
        _problem(r, 401)
        assert "invalid_token" in r.headers["www-authenticate"]


def test_me_and_settings(world: World) -> None:
    with world.client("bob") as bob:
        me = bob.get("/me").json()
        assert me["email"] == "bob@acme.test" and me["company"] == "acme"
        assert me["bcc_address"] == world.users["bob"]["bcc_address"]
        tracking = {"tracking_opens": False, "tracking_clicks": False, "tracking_allowed": True}
        assert bob.get("/me/settings").json() == {"sharing_default": "private",
                                                   "linking_mode": "auto", "email_links": "app",
                                                   "signature_html": "", **tracking}
        r = bob.patch("/me/settings", json={"sharing_default": "shared", "linking_mode": "manual"})
        assert r.json() == {"sharing_default": "shared", "linking_mode": "manual",
                            "email_links": "app", "signature_html": "", **tracking}
        r = bob.patch("/me/settings", json={"signature_html": '<p onclick="x()">Bob<script>y()</script></p>'})
        assert r.json()["signature_html"] == "<p>Bob</p>"
        assert bob.patch("/me/settings", json={"signature_html": ""}).json()["signature_html"] == ""
        body = _problem(bob.patch("/me/settings", json={"sharing_default": "public"}), 422)
        assert body["detail"].startswith("sharing_default: Input should be 'private' or 'shared'")
        assert body["errors"][0]["loc"] == ["body", "sharing_default"]
        _problem(bob.patch("/me/settings", json={"colour": "blue"}), 422)
        bob.patch("/me/settings", json={"sharing_default": "private", "linking_mode": "auto"})
    assert world.srv.cli("user", "show", "bob@acme.test")["linking_mode"] == "auto"


def test_alternates_and_blocked_addresses(world: World) -> None:
    with world.client("bob") as bob:
        r = bob.post("/me/alternates", json={"email": "Bob.Home@Example.test"})
        assert r.status_code == 201, r.text
        assert r.json()["email"] == "bob.home@example.test" and r.json()["status"] == "pending"
        [alt] = bob.get("/me/alternates").json()
        assert alt["email"] == "bob.home@example.test" and alt["expires_at"]
        r = bob.post("/me/alternates/bob.home@example.test/resend")
        assert _problem(r, 429)["detail"].startswith("a confirmation was emailed")
        assert int(r.headers["retry-after"]) > 0
        _problem(bob.post("/me/alternates", json={"email": "not an address"}), 422)
        _problem(bob.post("/me/alternates", json={"email": "bob@acme.test"}), 422)
        assert bob.delete("/me/alternates/bob.home@example.test").status_code == 204
        _problem(bob.delete("/me/alternates/bob.home@example.test"), 404)
        assert bob.get("/me/alternates").json() == []

        r = bob.post("/me/blocked", json={"pattern": "@Spam.test"})
        assert r.status_code == 201 and r.json()["pattern"] == "@spam.test"
        assert r.json()["kind"] == "domain"
        assert [b["pattern"] for b in bob.get("/me/blocked").json()] == ["@spam.test"]
        assert bob.get("/me").json()["blocked"] == ["@spam.test"]
        assert bob.delete("/me/blocked/@spam.test").status_code == 204
        _problem(bob.delete("/me/blocked/@spam.test"), 404)


def test_threads_listing_filters_search_and_paging(world: World) -> None:
    with world.client("alice") as alice:
        page = alice.get("/threads").json()
        assert [t["subject"] for t in page["threads"]] == ["Secret terms", "Shared plan",
                                                           "Private offer"]
        assert page["next_offset"] is None
        shared = next(t for t in page["threads"] if t["subject"] == "Shared plan")
        assert {"kind": "deal", "id": world.ids["big"], "how": "auto",
                "name": "Big deal"} in shared["links"]
        assert {"kind": "person", "id": world.ids["dana"], "how": "auto",
                "name": "Dana Client"} in shared["links"]
        by_deal = alice.get("/threads", params={"deal": world.ids["big"]}).json()["threads"]
        assert {t["thread_id"] for t in by_deal} == {world.threads["shared"],
                                                      world.threads["private"]}
        by_person = alice.get("/threads", params={"person": world.ids["finn"]}).json()["threads"]
        assert [t["thread_id"] for t in by_person] == [world.threads["secret"]]
        found = alice.get("/threads", params={"q": "THE OFFER"}).json()["threads"]
        assert [t["thread_id"] for t in found] == [world.threads["private"]]
        found = alice.get("/threads", params={"q": "finn@client"}).json()["threads"]
        assert [t["thread_id"] for t in found] == [world.threads["secret"]]
        assert alice.get("/threads", params={"q": "100%_"}).json()["threads"] == []
        one = alice.get("/threads", params={"limit": 1}).json()
        assert len(one["threads"]) == 1 and one["next_offset"] == 1
        two = alice.get("/threads", params={"limit": 2, "offset": 1}).json()
        assert [t["subject"] for t in two["threads"]] == ["Shared plan", "Private offer"]
        assert two["next_offset"] is None
        _problem(alice.get("/threads", params={"limit": 0}), 422)
        _problem(alice.get("/threads", params={"deal": "x"}), 422)


def test_a_thread_with_sanitized_html_and_downloads(world: World) -> None:
    with world.client("alice") as alice:
        t = alice.get(f"/threads/{world.threads['private']}").json()
        assert t["subject"] == "Private offer" and t["visibility"] == "private"
        [m] = t["messages"]
        assert m["from"] == "alice@acme.test" and m["to"] == ["dana@client.test"]
        assert m["has_html"] and m["remote_images"]
        assert "<script" not in m["html"] and "pwned" not in m["html"]
        assert "onerror" not in m["html"] and "127.0.0.1:9" not in m["html"]
        assert 'href="https://example.com/offer"' in m["html"]
        [att] = m["attachments"]
        assert att["filename"] == "offer.pdf" and att["size"] == len(b"%PDF-1.4 offer")
        r = alice.get(f"/attachments/{att['id']}")
        assert r.status_code == 200 and r.content == b"%PDF-1.4 offer"
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["content-disposition"] == 'attachment; filename="offer.pdf"'
        assert r.headers["x-content-type-options"] == "nosniff"
        assert hashlib.sha256(r.content).hexdigest() == att["sha256"]
        raw = alice.get(f"/messages/{m['id']}/raw")
        assert raw.status_code == 200 and raw.content == world.raw["private"]
        assert raw.headers["content-type"] == "message/rfc822"
        _problem(alice.get("/threads/999999"), 404)
        _problem(alice.get("/attachments/999999"), 404)
        _problem(alice.get("/messages/999999/raw"), 404)
        _problem(alice.get(f"/threads/{2**63}"), 422)


def test_link_unlink_visibility_archive_delete(world: World) -> None:
    srv = world.srv
    raw = make_message(frm="alice@acme.test", to="dana@client.test", subject="To be handled",
                       message_id="<handled@acme.test>")
    assert send(srv.smtp_port, world.users["alice"]["bcc_address"], raw)[0] == 250
    with world.client("alice") as alice:
        [t] = alice.get("/threads", params={"q": "handled"}).json()["threads"]
        tid = t["thread_id"]
        assert [(lk["kind"], lk["id"]) for lk in t["links"] if lk["kind"] == "deal"] == [
            ("deal", world.ids["big"])]
        r = alice.post(f"/threads/{tid}/links", json={"kind": "deal", "id": world.ids["second"]})
        assert r.status_code == 200, r.text
        deals = [lk for lk in r.json()["links"] if lk["kind"] in ("deal", "lead", "project")]
        assert deals == [{"kind": "deal", "id": world.ids["second"], "how": "manual",
                          "name": "Second deal"}]
        assert srv.cli("mail", "show", str(tid))["links"] == [
            {k: v for k, v in lk.items() if k != "name"} for lk in r.json()["links"]]
        _problem(alice.post(f"/threads/{tid}/links", json={"kind": "deal", "id": 999999}), 404)
        _problem(alice.post(f"/threads/{tid}/links", json={"kind": "planet", "id": 1}), 422)
        r = alice.delete(f"/threads/{tid}/links/deal/{world.ids['second']}")
        assert r.status_code == 200
        assert [lk["kind"] for lk in r.json()["links"]] == ["person"]
        _problem(alice.delete(f"/threads/{tid}/links/deal/{world.ids['second']}"), 404)
        r = alice.patch(f"/threads/{tid}", json={"visibility": "private"})
        assert r.status_code == 200 and r.json()["visibility"] == "private"
        r = alice.post(f"/threads/{tid}/archive")
        assert r.json() == {"thread_id": tid, "archived": True, "writeback_jobs": 0}
        assert [t["thread_id"] for t in alice.get("/threads", params={"archived": True})
                .json()["threads"]] == [tid]
        assert tid not in [t["thread_id"] for t in alice.get("/threads", params={"archived": False})
                           .json()["threads"]]
        r = alice.delete(f"/threads/{tid}")
        assert r.json() == {"thread_id": tid, "deleted": True, "messages": 1, "writeback_jobs": 0}
        _problem(alice.get(f"/threads/{tid}"), 404)


@pytest.mark.spec("5.7")
def test_admin_upserts_drive_retroactive_linking(world: World) -> None:
    srv = world.srv
    srv.cli("company", "set", "other", "--create-unknown-contacts", "off")
    olga = srv.setup_user("olga@other.test", company="other", name="Olga", admin=True)
    raw = make_message(frm="eve@other.test", to="ivy@client.test", subject="Hello Ivy",
                       message_id="<ivy@other.test>")
    assert send(srv.smtp_port, world.users["eve"]["bcc_address"], raw, mail_from="eve@other.test")[0] == 250
    with world.client("eve") as eve, world.client(None) as http:
        http.headers["Authorization"] = f"Bearer {olga['api_token']}"
        [t] = eve.get("/threads").json()["threads"]
        assert t["links"] == []
        r = http.put("/admin/persons/p-ivy", json={"name": "Ivy", "emails": ["ivy@client.test"]})
        assert r.status_code == 200, r.text
        assert r.json()["created"] is True and r.json()["relinked_threads"] == 1
        ivy = r.json()["id"]
        [t] = eve.get("/threads").json()["threads"]
        assert t["links"] == [{"kind": "person", "id": ivy, "how": "auto", "name": "Ivy"}]
        r = http.put("/admin/deals/d-ivy", json={"title": "Ivy deal", "person_external_id": "p-ivy"})
        assert r.json()["created"] is True and r.json()["relinked_threads"] == 1
        deal = r.json()["id"]
        assert r.json()["bcc_address"].startswith(f"other+deal-{deal}-")
        [t] = eve.get("/threads").json()["threads"]
        assert ("deal", deal, "auto") in {(lk["kind"], lk["id"], lk["how"]) for lk in t["links"]}
        # a second open lead for Ivy: the deal link is kept (rule §5.6: a link is kept)
        r = http.put("/admin/leads/l-ivy", json={"title": "Ivy lead", "person_id": ivy})
        assert r.json()["created"] is True and r.json()["relinked_threads"] == 0
        # replace: new name, the address list replaced; updating is not creating
        r = http.put("/admin/persons/p-ivy", json={"name": "Ivy Client",
                                                   "emails": ["ivy@client.test", "ivy@home.test"]})
        assert r.json()["created"] is False and r.json()["name"] == "Ivy Client"
        assert r.json()["emails"] == ["ivy@client.test", "ivy@home.test"]
        assert http.get("/admin/persons/p-ivy").json()["emails"] == ["ivy@client.test", "ivy@home.test"]
        # the address already belongs to another person of the company → 409, nothing changed
        http.put("/admin/persons/p-ivy2", json={"name": "Other", "emails": ["other@client.test"]})
        body = _problem(http.put("/admin/persons/p-ivy2", json={
            "name": "Other", "emails": ["ivy@home.test"]}), 409)
        assert "ivy@home.test" in body["detail"]
        r = http.put("/admin/deals/d-ivy", json={"title": "Ivy deal", "status": "won",
                                                 "person_external_id": "p-ivy"})
        assert r.json()["status"] == "won" and r.json()["created"] is False
        _problem(http.put("/admin/deals/d-ivy", json={"title": "x", "status": "closed"}), 422)
        _problem(http.put("/admin/deals/d-x", json={"title": "x", "person_external_id": "nope"}), 404)
        _problem(http.put("/admin/leads/l-x", json={"title": "x", "deal_external_id": "d-ivy"}), 422)
        _problem(http.put("/admin/deals/d-x", json={"title": "x", "person_id": 1,
                                                    "person_external_id": "p-ivy"}), 422)
        assert http.get("/admin/deals/d-ivy").json()["id"] == deal
        # deleting the deal unlinks it; the rule then finds the lead as the only open item
        assert http.delete("/admin/deals/d-ivy").status_code == 204
        _problem(http.get("/admin/deals/d-ivy"), 404)
        [t] = eve.get("/threads").json()["threads"]
        assert {(lk["kind"], lk["name"]) for lk in t["links"]} == {("person", "Ivy Client"),
                                                                    ("lead", "Ivy lead")}
        r = http.put("/admin/organizations/o-ivy", json={"name": "Ivy Inc"})
        assert r.json()["created"] is True
        r = http.put("/admin/persons/p-ivy", json={"name": "Ivy Client", "emails": ["ivy@client.test"],
                                                   "organization_external_id": "o-ivy"})
        assert r.json()["organization_id"] == http.get("/admin/organizations/o-ivy").json()["id"]
        assert http.delete("/admin/organizations/o-ivy").status_code == 204
        assert http.delete("/admin/persons/p-ivy").status_code == 204
        _problem(http.delete("/admin/persons/p-ivy"), 404)
        [t] = eve.get("/threads").json()["threads"]
        assert {lk["kind"] for lk in t["links"]} == {"lead"}
    # the other company's CRM is out of reach of acme's admin
    with world.client("carol") as carol:
        _problem(carol.get("/admin/persons/p-ivy2"), 404)


def test_admin_routes_need_an_admin_of_the_same_company(world: World) -> None:
    with world.client("alice") as alice:
        r = alice.put("/admin/persons/p-z", json={"name": "Z", "emails": ["z@z.test"]})
        assert _problem(r, 403)["detail"] == "this needs an admin's API token"
        _problem(alice.get("/admin/users"), 403)
    with world.client("carol") as admin:
        users = admin.get("/admin/users").json()
        assert {u["email"] for u in users} >= {"alice@acme.test", "bob@acme.test"}
        assert "eve@other.test" not in {u["email"] for u in users}
        eve = world.users["eve"]["id"]
        _problem(admin.post(f"/admin/users/{eve}/rotate-address"), 404)
        r = admin.post("/admin/users", json={"email": "Hal@Acme.test", "name": "Hal"})
        assert r.status_code == 201 and r.json()["email"] == "hal@acme.test"
        hal = r.json()
        assert hal["api_token"].startswith("bccd_") and hal["bcc_address"].startswith("acme+")
        _problem(admin.post("/admin/users", json={"email": "hal@acme.test"}), 409)
        r = admin.post(f"/admin/users/{hal['id']}/rotate-address")
        assert r.status_code == 200 and r.json()["bcc_address"] != hal["bcc_address"]
    with world.client(None) as http:
        me = http.get("/me", headers={"Authorization": f"Bearer {hal['api_token']}"}).json()
        assert me["bcc_address"] == r.json()["bcc_address"]


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_rejections_are_the_callers(world: World, who: str) -> None:
    raw = make_message(frm="Mallory <mallory@evil.test>", message_id=f"<rej-{who}@evil.test>")
    code, _ = send(world.srv.smtp_port, world.users[who]["bcc_address"], raw,
                   mail_from="mallory@evil.test")
    assert code == 550
    with world.client(who) as http:
        rows = http.get("/me/rejections").json()
    mine = [r for r in rows if r["message_id"] == f"rej-{who}@evil.test"]
    assert len(mine) == 1 and mine[0]["code"] == "550 5.7.1"
    assert "mallory@evil.test" in mine[0]["reason"]
    other = "bob" if who == "alice" else "alice"
    assert not [r for r in rows if r["message_id"] == f"rej-{other}@evil.test"]


def test_metrics_and_health(world: World) -> None:
    import httpx

    # its own refused copy: the counter must not depend on which tests ran before
    raw = make_message(frm="Mallory <mallory@evil.test>", message_id="<metrics@evil.test>")
    assert send(world.srv.smtp_port, world.users["alice"]["bcc_address"], raw,
                mail_from="mallory@evil.test")[0] == 550
    with httpx.Client(base_url=world.srv.http_url, timeout=10) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
             if line and not line.startswith("#")}
    assert all(n.startswith("bccd_") for n in names), sorted(n for n in names if not n.startswith("bccd_"))
    stored = [line for line in text.splitlines()
              if line.startswith('bccd_messages_accepted_total{outcome="stored",source="bcc"}')]
    assert stored and float(stored[0].split()[-1]) >= 3
    refused = [line for line in text.splitlines() if line.startswith("bccd_messages_refused")]
    assert 'bccd_messages_refused_total{code="550 5.7.1",source="bcc"}' in text, refused
    assert 'bccd_ingest_seconds_count{source="bcc"}' in text
    assert 'bccd_imap_accounts{state="active"} 0.0' in text
    assert "bccd_outbox_depth" in text and "bccd_metrics_db_up 1.0" in text


def test_no_webhook_url_no_events(world: World) -> None:
    with world.client("carol") as admin:
        assert admin.get("/admin/webhooks/deliveries").json() == []
        _problem(admin.get("/admin/webhooks/deliveries", params={"state": "lost"}), 422)


@pytest.mark.spec("4.4")
def test_quarantine_list_and_release(make_server) -> None:
    import httpx

    srv = make_server({"auth": {"unverified": "quarantine"}})
    alice = srv.setup_user()
    bob = srv.setup_user("bob@acme.test", name="Bob")
    raw = make_message(frm="Alice <alice@home.test>", subject="From home",
                       message_id="<q1@home.test>")
    assert send(srv.smtp_port, alice["bcc_address"], raw, mail_from="alice@home.test")[0] == 250
    base = f"{srv.http_url}/api/v1"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {alice['api_token']}"},
                      timeout=20) as a, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {bob['api_token']}"},
                         timeout=20) as b:
        [held] = a.get("/me/quarantine").json()
        assert held["from"] == "alice@home.test" and held["status"] == "held"
        assert b.get("/me/quarantine").json() == []
        _problem(b.post(f"/me/quarantine/{held['id']}/release"), 404)
        r = a.post(f"/me/quarantine/{held['id']}/release")
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "stored" and r.json()["thread_id"]
        assert a.get("/me/quarantine", params={"held": True}).json() == []
        assert a.get("/me/quarantine").json()[0]["status"] == "released"
        t = a.get(f"/threads/{r.json()['thread_id']}").json()
        assert t["messages"][0]["from"] == "alice@home.test"
        r = a.post(f"/me/quarantine/{held['id']}/release")
        assert r.status_code == 200 and r.json()["outcome"] == "duplicate"
        _problem(a.post("/me/quarantine/999999/release"), 404)
