"""SPEC §5.10 categories: the named checks in their order, on real-shaped messages parsed by
the bounded parser, the look-alikes that stay ``person``, and what each category becomes
under the company's settings."""

from __future__ import annotations

import pytest

from bccd.ingest import categorize
from bccd.ingest.categorize import Ask
from bccd.ingest.parse import Parsed, parse
from tests.support.automated import SHAPES, flanker_bounce

pytestmark = pytest.mark.spec("5.10")

USER = "alice@corp.test"
BOB = "bob@client.test"


def ask(p: Parsed, *, null_sender: bool | None = None, internal: bool = False,
        in_conversation: bool = False, sender: str = BOB) -> Ask:
    return Ask(signals=p.signals, report=p.report is not None and p.report.structured,
               null_sender=p.signals.return_path == "" if null_sender is None else null_sender,
               sender=sender, replies=bool(p.thread_refs()), internal=lambda: internal,
               in_conversation=lambda: in_conversation)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_real_shaped_message_gets_its_category_with_a_reason(name: str) -> None:
    shape = SHAPES[name]
    sender = "carol@corp.test" if shape.colleague else BOB
    raw = shape.build(sender, USER, in_reply_to="<q42@corp.test>" if shape.reply else "")
    p = parse(raw, max_header_size=512 * 1024)
    got = categorize.categorize(ask(p, internal=shape.colleague, in_conversation=shape.reply,
                                    sender=sender))
    assert got.name == shape.category
    assert shape.reason in got.reason
    assert (got.reason == "") == (shape.category == "person")


@pytest.mark.parametrize("name, reason", [
    ("zed.eml", "delivery report"),            # Postfix, with Auto-Submitted: a bounce all the same
    ("mailbox-full.eml", "delivery report"),   # AOL
    ("office365.eml", "delivery report"),      # Exchange Online
    ("delayed.eml", "delivery report"),
    ("gmail-invalid-address.eml", "null return path from mailer-daemon"),  # plain text
    ("gmail-no-dns.eml", "null return path from mailer-daemon"),
])
def test_bounces_from_other_mtas_are_bounces(name: str, reason: str) -> None:
    p = parse(flanker_bounce(name), max_header_size=512 * 1024)
    frm = p.from_values[0].lower()
    sender = "mailer-daemon@googlemail.com" if "googlemail" in frm else "mailer-daemon@x.test"
    got = categorize.categorize(ask(p, sender=sender))
    assert got.name == "bounce" and got.reason.startswith(reason)


def test_the_checks_run_in_the_spec_order() -> None:
    names = [c.__name__ for c in categorize.CHECKS]
    assert names == ["_delivery_report", "_null_return_path", "_auto_replied", "_list_headers",
                     "_precedence_bulk", "_internal"]


def test_a_null_return_path_alone_is_a_bounce_but_not_on_an_rfc3834_auto_reply() -> None:
    plain = parse(b"From: <x@client.test>\r\nTo: <a@corp.test>\r\nSubject: hi\r\n\r\nhi\r\n",
                  max_header_size=65536)
    assert categorize.categorize(ask(plain, null_sender=True)).name == "bounce"
    auto = parse(SHAPES["sieve_vacation_with_null_return_path"].build(BOB, USER),
                 max_header_size=65536)
    assert auto.signals.return_path == ""
    assert categorize.categorize(ask(auto)).name == "auto_reply"
    # … unless a mailer daemon sends it
    assert categorize.categorize(ask(auto, sender="MAILER-DAEMON@client.test")).name == "bounce"


def test_precedence_bulk_on_a_reply_outside_a_conversation_of_the_user_stays_bulk() -> None:
    raw = SHAPES["helpdesk_reply_with_precedence_bulk"].build(BOB, USER, in_reply_to="<x@y.test>")
    p = parse(raw, max_header_size=65536)
    assert categorize.categorize(ask(p, in_conversation=False)).name == "bulk"
    assert categorize.categorize(ask(p, in_conversation=True)).name == "person"


def test_a_list_reply_in_the_users_conversation_is_still_bulk() -> None:
    raw = SHAPES["mailing_list_post"].build(BOB, USER, in_reply_to="<q42@corp.test>")
    p = parse(raw, max_header_size=65536)
    assert categorize.categorize(ask(p, in_conversation=True)).name == "bulk"


def test_internal_is_asked_only_when_nothing_automated_decided() -> None:
    asked: list[str] = []
    p = parse(SHAPES["newsletter"].build(BOB, USER), max_header_size=65536)
    a = Ask(signals=p.signals, report=False, null_sender=False, sender=BOB, replies=False,
            internal=lambda: asked.append("internal") or True,
            in_conversation=lambda: asked.append("conversation") or True)
    assert categorize.categorize(a).name == "bulk" and asked == []


@pytest.mark.parametrize("category, automated, internal, expected", [
    ("auto_reply", "unlinked", "store", "unlinked"),
    ("bulk", "unlinked", "store", "unlinked"),
    ("bulk", "store", "store", "file"),
    ("auto_reply", "drop", "store", "drop"),
    ("bounce", "drop", "drop", "unlinked"),    # a bounce is never dropped
    ("internal", "drop", "store", "file"),
    ("internal", "unlinked", "drop", "drop"),
    ("person", "drop", "drop", "file"),
])
def test_what_a_category_becomes_under_the_company_settings(
        category: str, automated: str, internal: str, expected: str) -> None:
    assert categorize.handling(category, automated, internal) == expected


def test_internal_means_every_counterpart_at_a_domain_or_a_colleague() -> None:
    domains = frozenset({"corp.test"})
    none: set[str] = set()
    assert categorize.internal(["carol@corp.test", "dan@eu.corp.test"], domains, lambda a: none)
    assert categorize.internal([], domains, lambda a: none)   # a note to oneself
    assert not categorize.internal(["carol@corp.test", "bob@client.test"], domains,
                                   lambda a: none)
    assert categorize.internal(["carol@corp.test", "eve@gmail.com"], domains,
                               lambda a: {"eve@gmail.com"})
    assert not categorize.internal(["bob@notcorp.test"], domains, lambda a: none)
