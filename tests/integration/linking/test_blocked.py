"""SPEC §5.2 over real SMTP, on SQLite and PostgreSQL: a user's blocked addresses and
domains — a copy whose sender (incoming) or every counterpart (outgoing) is blocked is
accepted with 250, counted and logged, and not stored; otherwise the blocked
counterparts are simply not linked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.linking_world import Tenant, dropped_count, message_count
from tests.support.server import BccdServer, CliError

pytestmark = pytest.mark.spec("5.2")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml" / "forwarded"


def test_block_add_list_remove_normalize_and_validate_patterns(srv: BccdServer) -> None:
    t = Tenant(srv, "blockcli")
    email = t.alice["email"]
    assert srv.cli("block", "add", email, "Bob@Client.TEST")["pattern"] == "bob@client.test"
    assert srv.cli("block", "add", email, "@Bücher.TEST")["pattern"] == "@xn--bcher-kva.test"
    srv.cli("block", "add", email, "bob@client.test")  # twice is once
    assert [b["pattern"] for b in srv.cli("block", "list", email)] == [
        "bob@client.test", "@xn--bcher-kva.test"]
    assert srv.cli("user", "show", email)["blocked"] == ["bob@client.test", "@xn--bcher-kva.test"]
    srv.cli("block", "remove", email, "BOB@client.test")
    assert [b["pattern"] for b in srv.cli("block", "list", email)] == ["@xn--bcher-kva.test"]
    with pytest.raises(CliError) as err:
        srv.cli("block", "remove", email, "bob@client.test")
    assert err.value.code == 1 and "not blocked" in err.value.stderr
    with pytest.raises(CliError) as err:
        srv.cli("block", "add", email, "not an address")
    assert err.value.code == 1


@pytest.mark.parametrize(("pattern", "to"), [
    ("bob@client.test", "Bob <BOB@client.test>"),
    ("@client.test", "Bob <bob@client.test>"),
    ("@client.test", "Bob <bob@eu.mail.client.test>"),
])
def test_outgoing_copy_whose_only_counterpart_is_blocked_is_accepted_but_not_stored(
        srv: BccdServer, pattern: str, to: str) -> None:
    t = Tenant(srv, "blockdrop")
    t.block("alice", pattern)
    code, text = t.send(t.mail(to=to, subject="to a blocked person"))
    assert code == 250 and text.startswith(b"2.")
    assert t.threads() == []
    assert message_count(srv, t.alice["email"]) == 0
    assert dropped_count(srv, t.alice["email"]) == 1
    assert "bob" not in str(t.persons())
    events = [e for e in srv.log_events() if e.get("event") == "copy_dropped"]
    assert any(e.get("reason") == "every counterpart is blocked" for e in events)


def test_blocked_exact_address_does_not_cover_its_neighbours(srv: BccdServer) -> None:
    t = Tenant(srv, "blockexact")
    t.block("alice", "bob@client.test")
    t.send(t.mail(to="Bob+sales <bob+sales@client.test>", subject="sub-address"))
    t.send(t.mail(to="Bobby <bobby@client.test>", subject="other person"))
    assert len(t.threads()) == 2
    assert dropped_count(srv, t.alice["email"]) == 0


def test_every_counterpart_blocked_drops_but_one_free_counterpart_keeps_the_copy(
        srv: BccdServer) -> None:
    t = Tenant(srv, "blockpart")
    t.block("alice", "@client.test")
    t.block("alice", "eve@other.test")
    t.send(t.mail(to="bob@client.test", cc="Eve <eve@other.test>", subject="all blocked"))
    t.send(t.mail(to="bob@client.test", cc="Dan <dan@free.test>", subject="partly blocked"))
    [thread] = t.threads()
    assert thread["subject"] == "partly blocked"
    persons = t.persons()
    assert set(persons) == {"dan@free.test"}  # the blocked one was not created
    assert t.named(thread["links"]) == {("person", "#" + str(persons["dan@free.test"]["id"]),
                                         "auto")}
    assert t.show(thread["thread_id"])["messages"][0]["to"] == ["bob@client.test"]
    assert dropped_count(srv, t.alice["email"]) == 1


def test_blocked_known_person_is_not_linked(srv: BccdServer) -> None:
    t = Tenant(srv, "blockknown")
    t.person("Bob", "bob@client.test")
    t.person("Dan", "dan@free.test")
    t.item("deal", "Bob deal", "Bob")
    t.block("alice", "bob@client.test")
    t.send(t.mail(to="bob@client.test, dan@free.test"))
    assert t.named(t.thread()["links"]) == {("person", "Dan", "auto")}


def test_forwarded_mail_from_a_blocked_sender_is_dropped(srv: BccdServer) -> None:
    t = Tenant(srv, "blockfwd")
    t.block("alice", "@client.test")
    raw = (FIXTURES / "gmail.eml").read_bytes().replace(b"alice@acme.test",
                                                         t.alice["email"].encode())
    assert t.send(raw)[0] == 250
    assert t.threads() == []
    assert dropped_count(srv, t.alice["email"]) == 1
    events = [e for e in srv.log_events() if e.get("event") == "copy_dropped"]
    assert any(e.get("reason") == "sender is blocked" for e in events)


def test_blocking_is_per_user(srv: BccdServer) -> None:
    t = Tenant(srv, "blockuser")
    t.user("bea")
    t.block("alice", "@client.test")
    t.send(t.mail("bea", to="bob@client.test"), "bea")
    assert len(t.threads("bea")) == 1
    assert dropped_count(srv, t.users["bea"]["email"]) == 0
