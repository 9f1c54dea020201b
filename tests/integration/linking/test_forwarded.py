"""SPEC §4.3 over real SMTP: a message the user forwarded to their Smart Bcc address is
logged as the original incoming message from its original sender (Gmail, Outlook,
Apple Mail, an attached message); what cannot be recovered is the user's outgoing mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.linking_world import Tenant
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("4.3")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml" / "forwarded"


def sample(t: Tenant, name: str, **replace: str) -> bytes:
    raw = (FIXTURES / name).read_bytes().replace(b"alice@acme.test", t.alice["email"].encode())
    for old, new in replace.items():
        raw = raw.replace(old.encode(), new.encode())
    return raw


@pytest.mark.parametrize(("name", "sender", "subject", "cc"), [
    ("gmail.eml", "bob@client.test", "Budget for Q1 rollout", ["carol@client.test"]),
    ("outlook.eml", "dan@vendor.test", "Contract draft v2", ["erin@vendor.test"]),
    ("outlook_web.eml", "hank@logistics.test", "Delivery schedule", []),
    ("apple_mail.eml", "frank@partner.test", "Meeting notes", ["ivy@partner.test"]),
])
def test_forwarded_sample_is_logged_as_the_incoming_original(
        sqlite_srv: BccdServer, name: str, sender: str, subject: str, cc: list[str]) -> None:
    t = Tenant(sqlite_srv, name.split(".")[0])
    raw = sample(t, name)
    assert t.send(raw)[0] == 250
    assert t.send(raw)[0] == 250  # a retry is the same message
    thread = t.thread()
    assert thread["subject"] == subject and thread["messages"] == 1
    [msg] = t.show(thread["thread_id"])["messages"]
    assert msg["direction"] == "incoming"
    assert msg["from"] == sender
    assert msg["forwarded_by"] == t.alice["email"]
    assert msg["to"] == [t.alice["email"]] and msg["cc"] == cc
    persons = t.persons()
    linked = {lk["id"] for lk in thread["links"] if lk["kind"] == "person"}
    assert linked == {persons[e]["id"] for e in [sender, *cc]}


def test_attached_message_is_logged_with_its_own_message_id_and_attachments(
        sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "rfc822")
    t.person("Billing", "billing@supplier.test")
    t.item("deal", "Supplies", "Billing")
    assert t.send(sample(t, "attached_rfc822.eml"))[0] == 250
    thread = t.thread()
    [msg] = t.show(thread["thread_id"])["messages"]
    assert (msg["direction"], msg["from"], msg["message_id"]) == (
        "incoming", "billing@supplier.test", "inv-2026-114@supplier.test")
    assert [a["filename"] for a in msg["attachments"]] == ["invoice-2026-114.pdf"]
    assert t.named(thread["links"]) == {("person", "Billing", "auto"),
                                        ("deal", "Supplies", "auto")}


def test_forwarding_the_same_original_twice_stores_it_once(sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "fwd-twice")
    first = sample(t, "gmail.eml")
    second = sample(t, "gmail.eml", **{
        "CAF3x9Kq8aZ1mV0Wn2pYtR5sLh7uE4dQ6bN8cJ1oX2fG3hI9kL0": "another-forward-id",
        "FYI, logging this one.": "Logging it again, sorry."})
    assert t.send(first)[0] == 250 and t.send(second)[0] == 250
    assert t.thread()["messages"] == 1


def test_unrecoverable_forward_is_stored_as_the_users_outgoing_message(
        sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "fwd-lost")
    assert t.send(sample(t, "unrecoverable.eml"))[0] == 250
    thread = t.thread()
    assert thread["subject"] == "Fwd: Call notes"
    [msg] = t.show(thread["thread_id"])["messages"]
    assert (msg["direction"], msg["from"], msg["forwarded_by"]) == (
        "outgoing", t.alice["email"], None)
    assert "Call went well" in msg["text"]


def test_forward_addressed_to_a_client_is_the_users_outgoing_message(
        sqlite_srv: BccdServer) -> None:
    t = Tenant(sqlite_srv, "fwd-client")
    raw = sample(t, "gmail.eml", **{"To: acme+abcdefghijklmnop@bcc.localhost":
                                    "To: Zoe Partner <zoe@partner.test>"})
    assert t.send(raw)[0] == 250
    thread = t.thread()
    [msg] = t.show(thread["thread_id"])["messages"]
    assert (msg["direction"], msg["from"], msg["to"]) == (
        "outgoing", t.alice["email"], ["zoe@partner.test"])
    assert msg["forwarded_by"] is None
    assert t.named(thread["links"]) == {("person", "#" + str(
        t.persons()["zoe@partner.test"]["id"]), "auto")}
