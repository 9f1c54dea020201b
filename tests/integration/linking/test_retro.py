"""SPEC §5.7 on SQLite and PostgreSQL: adding an address to a person (or creating one)
links the existing threads with that counterpart; creating an open deal/lead/project —
or changing an item's status — re-applies rule §5.6 to those threads. The command
returns once the links exist, and running it again changes nothing."""

from __future__ import annotations

import pytest

from bccd.linking import retro
from tests.support.linking_world import Tenant
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("5.7")


def test_adding_an_address_to_a_person_links_the_existing_threads(srv: BccdServer) -> None:
    t = Tenant(srv, "retro-email")
    t.company_set("off")
    bob = t.person("Bob", "bob@client.test")
    t.item("deal", "Bob deal", "Bob")
    t.send(t.mail(to="Bob <bob@home.test>", subject="to his other address"))
    t.send(t.mail(to="Bob <bob@home.test>", subject="again", message_id="<again@x.test>"))
    t.send(t.mail(to="someone@else.test", subject="unrelated"))
    assert all(th["links"] == [] for th in t.threads())
    out = srv.cli("person", "add-email", str(bob["id"]), "BOB@home.test")
    assert out["relinked_threads"] == 2
    by_subject = {th["subject"]: th for th in t.threads()}
    for subject in ("to his other address", "again"):
        assert t.named(by_subject[subject]["links"]) == {("person", "Bob", "auto"),
                                                         ("deal", "Bob deal", "auto")}
        [msg] = t.show(by_subject[subject]["thread_id"])["messages"]
        assert msg["to"] == ["bob@home.test"]
    assert by_subject["unrelated"]["links"] == []
    assert srv.cli("person", "add-email", str(bob["id"]), "bob@home.test")[
        "relinked_threads"] == 0  # idempotent
    assert [th["subject"] for th in t.threads("alice", "--person", str(bob["id"]))] == [
        "again", "to his other address"]


def test_creating_a_person_links_the_existing_threads_in_small_batches(
        srv: BccdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retro, "BATCH", 2)  # the CLI runs in this process
    t = Tenant(srv, "retro-person")
    t.company_set("off")
    for i in range(5):
        t.send(t.mail(to="Carol <carol@client.test>", subject=f"mail {i}"))
    out = t.person("Carol", "carol@client.test")
    assert out["relinked_threads"] == 5
    assert all(t.named(th["links"]) == {("person", "Carol", "auto")} for th in t.threads())


def test_retroactive_linking_respects_the_owners_blocklist(srv: BccdServer) -> None:
    t = Tenant(srv, "retro-block")
    t.company_set("off")
    t.user("bea")
    t.block("alice", "carol@client.test")
    t.send(t.mail(to="carol@client.test, dan@client.test", subject="alice's"))
    t.send(t.mail("bea", to="carol@client.test", subject="bea's"), "bea")
    t.person("Carol", "carol@client.test")
    assert t.named(t.thread("alice")["links"]) == set()
    assert t.named(t.thread("bea")["links"]) == {("person", "Carol", "auto")}


def test_creating_an_open_item_follows_the_rule_for_existing_threads(srv: BccdServer) -> None:
    t = Tenant(srv, "retro-item")
    t.person("Bob", "bob@client.test")
    t.person("Carol", "carol@client.test")
    t.item("lead", "Carol lead", "Carol")
    t.send(t.mail(to="bob@client.test", subject="bob only"))
    t.send(t.mail(to="bob@client.test, carol@client.test", subject="both"))
    before = {th["subject"]: th for th in t.threads()}
    assert t.named(before["bob only"]["links"]) == {("person", "Bob", "auto")}
    assert ("lead", "Carol lead", "auto") in t.named(before["both"]["links"])

    out = t.item("deal", "Bob deal", "Bob")
    assert out["relinked_threads"] == 1
    after = {th["subject"]: th for th in t.threads()}
    assert ("deal", "Bob deal", "auto") in t.named(after["bob only"]["links"])
    assert t.named(after["both"]["links"]) == t.named(before["both"]["links"])  # link kept

    t.item("project", "Bob project", "Bob")  # a second open item: the kept link stays
    assert ("deal", "Bob deal", "auto") in t.named(t.threads()[1]["links"])
    t.send(t.mail(to="bob@client.test", subject="new, two candidates"))
    newest = t.threads()[0]
    assert t.named_suggestions(newest["suggestions"]) == {("deal", "Bob deal"),
                                                         ("project", "Bob project")}
    assert not [lk for lk in newest["links"] if lk["kind"] != "person"]


def test_closing_an_item_drops_it_from_suggestions_and_the_remaining_one_applies(
        srv: BccdServer) -> None:
    t = Tenant(srv, "retro-close")
    t.person("Bob", "bob@client.test")
    deal = t.item("deal", "Deal", "Bob")
    t.item("lead", "Lead", "Bob")
    t.send(t.mail(to="bob@client.test"))
    assert t.named_suggestions(t.thread()["suggestions"]) == {("deal", "Deal"), ("lead", "Lead")}
    out = srv.cli("deal", "set", str(deal["id"]), "--status", "lost")
    assert out["relinked_threads"] == 1
    thread = t.thread()
    assert thread["suggestions"] == []
    assert ("lead", "Lead", "auto") in t.named(thread["links"])
