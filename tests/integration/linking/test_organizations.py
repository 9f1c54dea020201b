"""SPEC §5.11 on SQLite and PostgreSQL: a thread linked to a person who has an
organization is linked to it too (``how = auto``) — at filing and retroactively; when a
person moves between organizations (admin API ``PUT``, ``bccd person set``) the automatic
links of their threads follow and manual ones stay; ``organization`` filters the CLI, the
API and the Mail page; an organization only its owner may see is neither linked to
others' mail nor named to them (the one visibility rule, unchanged)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.linking_world import Tenant, stale_link_states
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("5.11")

BOB, CAROL = "bob@client.test", "carol@client.test"


def orgs(t: Tenant, thread: dict[str, Any]) -> set[tuple[str, str]]:
    """The thread's organization links as (name, how)."""
    return {(name, how) for kind, name, how in t.named(thread["links"]) if kind == "organization"}


def by_subject(t: Tenant, local: str = "alice", *filters: str) -> dict[str, dict[str, Any]]:
    return {th["subject"]: th for th in t.threads(local, *filters)}


def _put(api: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.put(path, json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_persons_organization_is_linked_at_filing_and_filters_every_front(
        srv: BccdServer) -> None:
    t = Tenant(srv, "org-filing")
    t.company_set("off")
    t.person("Bob", BOB, org="Client Co")
    t.person("Carol", CAROL)
    t.ids["Client Co"] = t.persons()[BOB]["organization_id"]
    t.kinds["Client Co"] = "organization"
    t.send(t.mail(to=f"Bob <{BOB}>", subject="to bob"))
    t.send(t.mail(to=f"Carol <{CAROL}>", subject="to carol"))
    t.send(t.mail(to="dan@client.test", subject="to dan"))
    threads = by_subject(t)
    assert orgs(t, threads["to bob"]) == {("Client Co", "auto")}
    assert orgs(t, threads["to carol"]) == set()

    org_id = str(t.ids["Client Co"])
    assert [th["subject"] for th in t.threads("alice", "--organization", org_id)] == ["to bob"]
    with t.api() as api:
        page = api.get("/threads", params={"organization": org_id}).json()
        assert [th["subject"] for th in page["threads"]] == ["to bob"]
    with t.page() as page:
        html = page.get("/mail", params={"organization": org_id}).text
        assert "to bob" in html and "to carol" not in html
        assert 'class="badge organization"' in html and "Client Co" in html
        listing = page.get("/mail").text  # the badge of an organization link filters by it
        assert f'href="/mail?organization={org_id}"' in listing

    # retroactively: Dan becomes a person of another organization
    out = t.person("Dan", "dan@client.test", org="Other Co")
    assert out["relinked_threads"] == 1
    t.ids["Other Co"], t.kinds["Other Co"] = out["organization_id"], "organization"
    assert orgs(t, by_subject(t)["to dan"]) == {("Other Co", "auto")}
    assert stale_link_states(srv) == []


def test_organization_links_follow_persons_moving_between_organizations(
        srv: BccdServer) -> None:
    t = Tenant(srv, "org-move")
    t.user("root", admin=True)
    t.company_set("off")
    with t.api("root") as admin:
        for ext, name in (("o-old", "Old Co"), ("o-new", "New Co"), ("o-partner", "Partner Co")):
            t.ids[name], t.kinds[name] = _put(admin, f"/admin/organizations/{ext}",
                                              {"name": name})["id"], "organization"
        for ext, name, email in (("p-bob", "Bob", BOB), ("p-carol", "Carol", CAROL)):
            t.ids[name], t.kinds[name] = _put(admin, f"/admin/persons/{ext}", {
                "name": name, "emails": [email], "organization_external_id": "o-old"})["id"], \
                "person"
    t.send(t.mail(to=f"Bob <{BOB}>", subject="bob"))
    t.send(t.mail(to=f"Bob <{BOB}>", cc=f"Carol <{CAROL}>", subject="both"))
    t.send(t.mail(to=f"Carol <{CAROL}>", subject="carol"))
    ids = {s: th["thread_id"] for s, th in by_subject(t).items()}
    srv.cli("mail", "link", str(ids["bob"]), "--organization", str(t.ids["Partner Co"]))
    srv.cli("mail", "link", str(ids["carol"]), "--organization", str(t.ids["Old Co"]))
    before = by_subject(t)
    assert orgs(t, before["bob"]) == {("Old Co", "auto"), ("Partner Co", "manual")}
    assert orgs(t, before["both"]) == {("Old Co", "auto")}
    assert orgs(t, before["carol"]) == {("Old Co", "manual")}

    with t.api("root") as admin:  # Bob moves to New Co (the CRM's upsert)
        out = _put(admin, "/admin/persons/p-bob", {"name": "Bob", "emails": [BOB],
                                                   "organization_external_id": "o-new"})
        assert out["organization_id"] == t.ids["New Co"] and out["relinked_threads"] == 2
    now = by_subject(t)
    assert orgs(t, now["bob"]) == {("New Co", "auto"), ("Partner Co", "manual")}
    assert orgs(t, now["both"]) == {("Old Co", "auto"), ("New Co", "auto")}  # Carol is there
    assert orgs(t, now["carol"]) == {("Old Co", "manual")}

    out = srv.cli("person", "set", str(t.ids["Carol"]), "--no-org")  # the command line
    assert out["organization_id"] is None and out["relinked_threads"] == 1
    now = by_subject(t)
    assert orgs(t, now["both"]) == {("New Co", "auto")}
    assert orgs(t, now["carol"]) == {("Old Co", "manual")}  # a manual link stays

    out = srv.cli("person", "set", str(t.ids["Carol"]), "--org", "new co")  # found by name
    assert out["organization_id"] == t.ids["New Co"] and out["relinked_threads"] == 1
    assert srv.cli("person", "set", str(t.ids["Carol"]), "--org", "New Co")[
        "relinked_threads"] == 0  # idempotent
    now = by_subject(t)
    assert orgs(t, now["carol"]) == {("Old Co", "manual"), ("New Co", "auto")}

    def timeline(name: str) -> set[str]:
        return {th["subject"] for th in t.threads("alice", "--organization", str(t.ids[name]))}

    assert timeline("Old Co") == {"carol"}
    assert timeline("New Co") == {"bob", "both", "carol"}
    assert timeline("Partner Co") == {"bob"}

    # a person unlinked by hand takes their automatic organization along
    srv.cli("mail", "unlink", str(ids["bob"]), "--person", str(t.ids["Bob"]))
    assert orgs(t, by_subject(t)["bob"]) == {("Partner Co", "manual")}
    assert stale_link_states(srv) == []


def test_an_organization_only_its_owner_may_see_is_not_linked_for_others_nor_named(
        srv: BccdServer) -> None:
    t = Tenant(srv, "org-owner")
    t.user("bea")
    t.user("root", admin=True)
    t.set_user("alice", sharing="shared")
    t.set_user("bea", sharing="shared")
    with t.api("root") as admin:
        secret = _put(admin, "/admin/organizations/o-secret", {
            "name": "Secret Co", "owner": t.alice["email"], "visible_to": "owner"})
        _put(admin, "/admin/persons/p-pat", {"name": "Pat", "emails": ["pat@client.test"],
                                             "organization_external_id": "o-secret"})
    t.ids["Secret Co"], t.kinds["Secret Co"] = secret["id"], "organization"
    t.send(t.mail(to="Pat <pat@client.test>", subject="alice's"))
    t.send(t.mail("bea", to="Pat <pat@client.test>", subject="bea's"), "bea")

    assert orgs(t, by_subject(t, "alice")["alice's"]) == {("Secret Co", "auto")}
    assert orgs(t, by_subject(t, "bea")["bea's"]) == set()  # bea may not see it
    # the rule is unchanged: alice's thread names an entity bea may not see
    assert set(by_subject(t, "bea")) == {"bea's"}
    assert set(by_subject(t, "alice")) == {"alice's", "bea's"}
    org_id = str(secret["id"])
    assert t.threads("bea", "--organization", org_id) == []
    assert [th["subject"] for th in t.threads("alice", "--organization", org_id)] == ["alice's"]
    with t.api("bea") as api:
        assert api.get("/threads", params={"organization": org_id}).json()["threads"] == []
    with t.page("bea") as page:
        html = page.get("/mail", params={"organization": org_id}).text
        assert "Secret Co" not in html and f"#{org_id}" in html

    with t.api("root") as admin:  # the organization is shared with the company
        _put(admin, "/admin/organizations/o-secret", {"name": "Secret Co",
                                                      "owner": t.alice["email"]})
    assert orgs(t, by_subject(t, "bea")["bea's"]) == {("Secret Co", "auto")}
    assert set(by_subject(t, "bea")) == {"alice's", "bea's"}
    assert stale_link_states(srv) == []
