"""SPEC §5.6/§8: what the user decides by hand wins over automatic linking —
``mail link|unlink``, a pinned address as the latest explicit choice, and
``mail archive|delete``."""

from __future__ import annotations

import pytest

from tests.support.linking_world import Tenant, message_count
from tests.support.server import BccdServer, CliError

pytestmark = [pytest.mark.spec("5.6"), pytest.mark.spec("8")]


def item_links(thread: dict) -> list[dict]:
    return [lk for lk in thread["links"] if lk["kind"] in ("deal", "lead", "project")]


def link(t: Tenant, thread_id: int, kind: str, name: str, *extra: str) -> dict:
    return dict(t.srv.cli("mail", "link", str(thread_id), f"--{kind}", str(t.ids[name]), *extra))


def test_manual_deal_link_replaces_the_automatic_one_and_survives_new_copies(
        sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "manual")
    t.person("Bob", "bob@client.test")
    t.item("deal", "Auto deal", "Bob")
    t.item("deal", "Other deal", None)
    t.send(t.mail(to="bob@client.test", message_id="<m1@x.test>"))
    tid = t.thread()["thread_id"]
    assert ("deal", "Auto deal", "auto") in t.named(t.thread()["links"])
    out = link(t, tid, "deal", "Other deal", "--as", t.alice["email"])
    assert t.named(item_links(out)) == {("deal", "Other deal", "manual")}
    t.send(t.mail(to="bob@client.test", message_id="<m2@x.test>", in_reply_to="<m1@x.test>"))
    t.item("project", "New project", "Bob")  # retro leaves the manual link alone
    thread = t.thread()
    assert thread["messages"] == 2
    assert t.named(item_links(thread)) == {("deal", "Other deal", "manual")}


def test_an_item_unlinked_by_hand_is_not_linked_again_automatically(
        sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "unlink")
    t.person("Bob", "bob@client.test")
    t.item("deal", "Deal", "Bob")
    t.send(t.mail(to="bob@client.test", message_id="<u1@x.test>"))
    tid = t.thread()["thread_id"]
    out = t.srv.cli("mail", "unlink", str(tid), "--deal", str(t.ids["Deal"]))
    assert item_links(out) == []
    assert t.named_suggestions(out["suggestions"]) == {("deal", "Deal")}
    t.send(t.mail(to="bob@client.test", message_id="<u2@x.test>", references="<u1@x.test>"))
    assert item_links(t.thread()) == []
    with pytest.raises(CliError) as err:
        t.srv.cli("mail", "unlink", str(tid), "--deal", str(t.ids["Deal"]))
    assert err.value.code == 1 and "not linked" in err.value.stderr


def test_manually_linking_a_person_applies_that_persons_single_open_item(
        sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "manual-person")
    t.company_set("off")
    t.person("Bob", "bob@client.test")
    t.item("lead", "Bob lead", "Bob")
    t.send(t.mail(to="bob.private@home.test"))
    tid = t.thread()["thread_id"]
    out = link(t, tid, "person", "Bob")
    assert t.named(out["links"]) == {("person", "Bob", "manual"), ("lead", "Bob lead", "auto")}


def test_a_pinned_copy_is_the_latest_choice_but_a_redelivery_does_not_undo_a_later_one(
        sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "pin-order")
    t.person("Bob", "bob@client.test")
    t.item("deal", "A", None)
    t.item("deal", "B", None)
    t.item("deal", "C", None)
    t.send(t.mail(to="bob@client.test", message_id="<p1@x.test>"))
    tid = t.thread()["thread_id"]
    link(t, tid, "deal", "A")
    pinned = t.mail(to="bob@client.test", message_id="<p2@x.test>", references="<p1@x.test>")
    t.send(pinned, to=[t.alice["bcc_address"], t.addresses["B"]])
    assert t.named(item_links(t.thread())) == {("deal", "B", "address")}
    link(t, tid, "deal", "C")
    t.send(pinned, to=[t.addresses["B"]])  # the client retried the old copy
    thread = t.thread()
    assert thread["messages"] == 2
    assert t.named(item_links(thread)) == {("deal", "C", "manual")}


def test_linking_needs_an_entity_of_the_company_that_the_actor_may_see(
        sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "link-checks")
    other = Tenant(sqlite_srv, "link-other")
    other.item("deal", "Foreign", None)
    t.user("bea")
    t.set_user("alice", sharing="shared")
    t.person("Bob", "bob@client.test")
    t.item("deal", "Mine", None, owner="alice", visible_to="owner")
    t.send(t.mail(to="bob@client.test"))
    tid = t.thread()["thread_id"]
    with pytest.raises(CliError) as err:
        t.srv.cli("mail", "link", str(tid), "--deal", str(other.ids["Foreign"]))
    assert err.value.code == 1 and "no deal" in err.value.stderr
    with pytest.raises(CliError) as err:
        link(t, tid, "deal", "Mine", "--as", t.users["bea"]["email"])
    assert err.value.code == 1 and "no deal" in err.value.stderr
    with pytest.raises(CliError) as err:
        t.srv.cli("mail", "link", str(tid), "--deal", "1", "--person", "1")
    assert err.value.code == 2
    link(t, tid, "deal", "Mine", "--as", t.alice["email"])
    assert t.threads("bea") == []  # now linked to a deal bea may not see


def test_archive_marks_the_thread_and_delete_removes_it_with_its_messages(
        sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "arch")
    t.user("bea")
    t.send(t.mail(to="bob@client.test", subject="keep", message_id="<k@x.test>"))
    t.send(t.mail(to="bob@client.test", subject="drop", message_id="<d1@x.test>"))
    t.send(t.mail(to="bob@client.test", subject="Re: drop", message_id="<d2@x.test>",
                  in_reply_to="<d1@x.test>"))
    ids = {th["subject"]: th["thread_id"] for th in t.threads()}
    out = t.srv.cli("mail", "archive", str(ids["keep"]), "--as", t.alice["email"])
    assert out["archived"] is True and out["writeback_jobs"] == 0
    assert {th["subject"]: th["archived"] for th in t.threads()} == {"keep": True, "drop": False}
    with pytest.raises(CliError):
        t.srv.cli("mail", "delete", str(ids["drop"]), "--as", t.users["bea"]["email"])
    out = t.srv.cli("mail", "delete", str(ids["drop"]))
    assert (out["deleted"], out["messages"]) == (True, 2)
    assert [th["subject"] for th in t.threads()] == ["keep"]
    assert message_count(sqlite_srv, t.alice["email"]) == 1
    with pytest.raises(CliError) as err:
        t.srv.cli("mail", "show", str(ids["drop"]))
    assert err.value.code == 1
