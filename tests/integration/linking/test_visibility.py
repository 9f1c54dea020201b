"""SPEC §1/§5.8 on SQLite and PostgreSQL: two users of one company (and an admin)
looking at each other's threads. Private: the owner only, never admins. Shared: others
see it only if it is linked and they may see every linked entity (``visible_to = owner``
entities are their owner's and the admins')."""

from __future__ import annotations

import pytest

from tests.support.linking_world import Tenant
from tests.support.server import BccdServer, CliError

pytestmark = [pytest.mark.spec("1"), pytest.mark.spec("5.8")]


def subjects(t: Tenant, local: str, *filters: str) -> set[str]:
    return {th["subject"] for th in t.threads(local, *filters)}


def test_two_users_and_an_admin_see_exactly_what_the_rule_allows(srv: BccdServer) -> None:
    t = Tenant(srv, "vis")
    t.user("bea")
    t.user("root", admin=True)
    t.company_set("off")
    t.person("Pat", "pat@client.test")
    t.person("Quinn", "quinn@client.test", owner="alice", visible_to="owner")
    t.item("deal", "Secret deal", None, owner="alice", visible_to="owner")
    t.item("deal", "Open deal", None)

    t.send(t.mail(to="pat@client.test", subject="private, linked"))
    t.set_user("alice", sharing="shared")
    t.send(t.mail(to="pat@client.test", subject="shared, linked to Pat"))
    t.send(t.mail(to="nobody@client.test", subject="shared, unlinked"))
    t.send(t.mail(to="quinn@client.test", subject="shared, owner-only person"))
    t.send(t.mail(to="pat@client.test", subject="shared, owner-only deal"),
           to=[t.addresses["Secret deal"]])
    t.send(t.mail(to="pat@client.test", subject="shared, company deal"),
           to=[t.addresses["Open deal"]])
    t.send(t.mail("bea", to="pat@client.test", subject="bea's private"), "bea")

    everything = {"private, linked", "shared, linked to Pat", "shared, unlinked",
                  "shared, owner-only person", "shared, owner-only deal",
                  "shared, company deal"}
    assert subjects(t, "alice") == everything
    assert subjects(t, "bea") == {"shared, linked to Pat", "shared, company deal",
                                  "bea's private"}
    assert subjects(t, "root") == {"shared, linked to Pat", "shared, company deal",
                                   "shared, owner-only person", "shared, owner-only deal"}
    assert subjects(t, "bea", "--deal", str(t.ids["Open deal"])) == {"shared, company deal"}
    assert subjects(t, "bea", "--deal", str(t.ids["Secret deal"])) == set()
    assert subjects(t, "alice", "--person", str(t.ids["Pat"])) == {
        "private, linked", "shared, linked to Pat", "shared, owner-only deal",
        "shared, company deal"}

    private = next(th for th in t.threads("alice") if th["subject"] == "private, linked")
    assert private["visibility"] == "private"
    for viewer in ("bea", "root"):
        with pytest.raises(CliError) as err:
            srv.cli("mail", "show", str(private["thread_id"]), "--as", t.users[viewer]["email"])
        assert err.value.code == 1 and "no thread" in err.value.stderr
    shown = srv.cli("mail", "show", str(private["thread_id"]), "--as", t.alice["email"])
    assert shown["subject"] == "private, linked"


def test_suggestions_of_items_a_viewer_may_not_see_are_hidden_from_them(
        srv: BccdServer) -> None:
    t = Tenant(srv, "vis-sugg")
    t.user("bea")
    t.set_user("alice", sharing="shared")
    t.person("Pat", "pat@client.test")
    t.item("deal", "Alice's deal", "Pat", owner="alice", visible_to="owner")
    t.item("lead", "Team lead", "Pat")
    t.send(t.mail(to="pat@client.test"))
    assert t.named_suggestions(t.thread("alice")["suggestions"]) == {
        ("deal", "Alice's deal"), ("lead", "Team lead")}
    assert t.named_suggestions(t.thread("bea")["suggestions"]) == {("lead", "Team lead")}


def test_user_set_sharing_changes_new_threads_only_and_mail_set_changes_one(
        srv: BccdServer) -> None:
    t = Tenant(srv, "vis-set")
    t.user("bea")
    t.person("Pat", "pat@client.test")
    t.send(t.mail(to="pat@client.test", subject="before"))
    t.set_user("alice", sharing="shared")
    t.send(t.mail(to="pat@client.test", subject="after"))
    assert {th["subject"]: th["visibility"] for th in t.threads()} == {
        "before": "private", "after": "shared"}
    assert subjects(t, "bea") == {"after"}

    before = next(th for th in t.threads() if th["subject"] == "before")
    with pytest.raises(CliError) as err:  # not bea's to change (nor to see)
        srv.cli("mail", "set", str(before["thread_id"]), "--visibility", "shared",
                "--as", t.users["bea"]["email"])
    assert err.value.code == 1
    out = srv.cli("mail", "set", str(before["thread_id"]), "--visibility", "shared",
                  "--as", t.alice["email"])
    assert out["visibility"] == "shared"
    assert subjects(t, "bea") == {"before", "after"}
    after = next(th for th in t.threads() if th["subject"] == "after")
    with pytest.raises(CliError) as err:  # bea may see it, but it is alice's
        srv.cli("mail", "set", str(after["thread_id"]), "--visibility", "private",
                "--as", t.users["bea"]["email"])
    assert err.value.code == 1 and "owner" in err.value.stderr
    srv.cli("mail", "set", str(after["thread_id"]), "--visibility", "private")  # operator
    assert subjects(t, "bea") == {"before"}
