"""SPEC §4.3: recovering the original from a forwarded copy (``bccd.ingest.forwarded``)
— the client samples in tests/fixtures/eml/forwarded, and the edges around them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bccd.addresses import Addr
from bccd.auth.verdict import SKIPPED
from bccd.ingest.filing import FileRequest
from bccd.ingest.forwarded import as_original, recover
from bccd.ingest.parse import Parsed, parse
from bccd.ingest.types import Source

pytestmark = pytest.mark.spec("4.3")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml" / "forwarded"
LIMIT = 512 * 1024


def load(name: str) -> Parsed:
    return parse((FIXTURES / name).read_bytes().replace(b"\n", b"\r\n"), max_header_size=LIMIT)


def text_mail(body: str, subject: str = "Fwd: x") -> Parsed:
    raw = (f"From: Alice <alice@acme.test>\r\nTo: acme+abcdefghijklmnop@bcc.localhost\r\n"
           f"Subject: {subject}\r\nDate: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
           f"Message-ID: <w@acme.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           f"{body}").encode()
    return parse(raw, max_header_size=LIMIT)


@pytest.mark.parametrize(("name", "how", "sender", "subject", "to", "cc", "date", "text"), [
    ("gmail.eml", "gmail", "bob@client.test", "Budget for Q1 rollout", ["alice@acme.test"],
     ["carol@client.test"], "2026-11-25T15:14:00+01:00", "approved the budget"),
    ("gmail_html_only.eml", "gmail", "gina@site.test", "Site visit", ["alice@acme.test"], [],
     "2026-11-24T09:05:00+01:00", "Tuesday works"),
    ("outlook.eml", "outlook", "dan@vendor.test", "Contract draft v2", ["alice@acme.test"],
     ["erin@vendor.test"], "2026-11-25T16:02:00+00:00", "second draft"),
    ("outlook_web.eml", "outlook", "hank@logistics.test", "Delivery schedule",
     ["alice@acme.test"], [], "2026-11-25T18:20:00+00:00", "pallets leave"),
    ("apple_mail.eml", "apple", "frank@partner.test", "Meeting notes", ["alice@acme.test"],
     ["ivy@partner.test"], "2026-11-25T17:45:09+01:00", "notes from today"),
    ("attached_rfc822.eml", "rfc822", "billing@supplier.test", "Invoice 2026-114",
     ["alice@acme.test"], [], "2026-11-24T10:00:00+00:00", "invoice 2026-114 attached"),
])
def test_each_client_sample_yields_the_original(
        name: str, how: str, sender: str, subject: str, to: list[str], cc: list[str],
        date: str, text: str) -> None:
    original = recover(load(name), max_header_size=LIMIT)
    assert original is not None
    assert (original.how, original.sender.email) == (how, sender)
    p = original.parsed
    assert p.subject == subject
    assert [a.email for a in p.to] == to and [a.email for a in p.cc] == cc
    assert p.date is not None and p.date.isoformat() == date
    assert text in p.text
    assert "Forwarded message" not in p.text and "From:" not in p.text


def test_attached_message_keeps_its_own_message_id_references_and_attachments() -> None:
    original = recover(load("attached_rfc822.eml"), max_header_size=LIMIT)
    assert original is not None
    assert original.parsed.message_id == "inv-2026-114@supplier.test"
    assert [a.filename for a in original.parsed.attachments] == ["invoice-2026-114.pdf"]


def test_header_block_original_has_no_message_id_but_a_stable_dedup_key() -> None:
    a = recover(load("gmail.eml"), max_header_size=LIMIT)
    b = recover(load("gmail_html_only.eml"), max_header_size=LIMIT)
    again = recover(load("gmail.eml"), max_header_size=LIMIT)
    assert a is not None and b is not None and again is not None
    assert a.parsed.message_id is None
    assert a.parsed.dedup_key == again.parsed.dedup_key != b.parsed.dedup_key
    # threading still follows the forward's In-Reply-To (Gmail names the original there)
    assert a.parsed.thread_refs() == [
        "BN6PR11MB3987A1B2C3D4E5F6A7B8C9D0E1F2A3B4@BN6PR11MB3987.namprd11.prod.outlook.com"]


def test_outlook_on_the_web_html_rule_is_a_marker_too() -> None:
    p = load("outlook_web.eml")
    html_only = dataclasses.replace(p, text="")
    original = recover(html_only, max_header_size=LIMIT)
    assert original is not None and original.sender.email == "hank@logistics.test"


def test_block_without_a_parseable_sender_is_not_recovered() -> None:
    assert recover(load("unrecoverable.eml"), max_header_size=LIMIT) is None


def test_a_from_line_without_a_marker_is_just_text() -> None:
    body = "Quick note.\r\n\r\nFrom: Bob <bob@client.test>\r\nSubject: x\r\n\r\nbody\r\n"
    assert recover(text_mail(body, subject="Notes"), max_header_size=LIMIT) is None


def test_marker_followed_by_prose_is_not_a_block() -> None:
    body = "---------- Forwarded message ---------\r\nSee below, thanks.\r\n"
    assert recover(text_mail(body), max_header_size=LIMIT) is None


def test_german_labels_and_an_explicit_message_id_line_are_understood() -> None:
    body = ("-------- Weitergeleitete Nachricht --------\r\n"
            "Von: Karl Kunde <karl@kunde.test>\r\nDatum: 25.11.2026 14:03\r\n"
            "Betreff: Angebot\r\nAn: Alice <alice@acme.test>\r\n"
            "Message-ID: <angebot-1@kunde.test>\r\n\r\nGuten Tag,\r\nbitte um Angebot.\r\n")
    original = recover(text_mail(body, subject="WG: Angebot"), max_header_size=LIMIT)
    assert original is not None
    assert original.sender == Addr("karl@kunde.test", "Karl Kunde")
    assert original.parsed.subject == "Angebot"
    assert original.parsed.message_id == "angebot-1@kunde.test"
    assert original.parsed.date is not None and original.parsed.date.hour == 14


def test_several_attached_messages_are_no_single_original() -> None:
    p = load("attached_rfc822.eml")
    two = dataclasses.replace(p, rfc822_parts=p.rfc822_parts * 2)
    assert recover(two, max_header_size=LIMIT) is None


def _request(p: Parsed) -> FileRequest:
    return FileRequest(user_id=1, raw=b"", parsed=p, source=Source.BCC, direction="outgoing",
                       sender=Addr("alice@acme.test", "Alice"), auth=SKIPPED,
                       bcc_domain="bcc.localhost", raw_sha256="0" * 64)


def test_forward_to_the_bcc_address_becomes_the_incoming_original() -> None:
    p = load("outlook.eml")
    original = recover(p, max_header_size=LIMIT)
    assert original is not None
    req = as_original(_request(p), original, {"alice@acme.test"})
    assert (req.direction, req.sender.email, req.forwarded_by) == (
        "incoming", "dan@vendor.test", "alice@acme.test")
    assert req.parsed.subject == "Contract draft v2"


def test_forward_addressed_to_someone_else_stays_the_users_outgoing_message() -> None:
    p = load("outlook.eml")
    p = dataclasses.replace(p, to=[Addr("zoe@client.test", "Zoe")])
    original = recover(p, max_header_size=LIMIT)
    assert original is not None
    req = as_original(_request(p), original, {"alice@acme.test"})
    assert (req.direction, req.sender.email, req.forwarded_by) == (
        "outgoing", "alice@acme.test", None)


def test_forwarding_ones_own_sent_mail_is_outgoing_from_the_user() -> None:
    body = ("---------- Forwarded message ---------\r\nFrom: Alice <alice@acme.test>\r\n"
            "Date: Wed, Nov 25, 2026 at 3:14 PM\r\nSubject: Offer\r\n"
            "To: Bob <bob@client.test>\r\n\r\nOur offer.\r\n")
    p = text_mail(body)
    original = recover(p, max_header_size=LIMIT)
    assert original is not None
    req = as_original(_request(p), original, {"alice@acme.test"})
    assert (req.direction, req.forwarded_by) == ("outgoing", "alice@acme.test")
    assert [a.email for a in req.parsed.to] == ["bob@client.test"]
