"""Delivery reports read with the standard library (SPEC §5.10 bounces): the failed
recipients and the returned message of DSNs written by other MTAs (the flanker corpus),
the plain-text ones, and a returned message joining its thread."""

from __future__ import annotations

import pytest

from bccd.ingest.parse import parse
from tests.support.automated import SHAPES, flanker_bounce

pytestmark = pytest.mark.spec("5.10")


def report_of(raw: bytes):
    p = parse(raw, max_header_size=512 * 1024)
    assert p.report is not None
    return p, p.report


def test_postfix_dsn_with_the_returned_message() -> None:
    p, r = report_of(flanker_bounce("zed.eml"))
    assert r.structured
    assert [(f.email, f.status) for f in r.failed] == [
        ("asdfasdfasdfasdfasdfasdfewrqertrtyrthsfgdfgadfqeadvxzvz@gmail.com", "5.1.1")]
    assert r.returned_message_id == "20090708054735.GC7578@example.com"
    assert r.returned_from == "foo@example.com"
    assert "20090708054735.GC7578@example.com" in p.thread_refs()  # joins that thread


def test_aol_dsn_returns_only_headers() -> None:
    _, r = report_of(flanker_bounce("mailbox-full.eml"))
    assert [(f.email, f.status) for f in r.failed] == [("user@aol.com", "5.2.2")]
    assert (r.returned_message_id, r.returned_from) == ("4E326A95.3010907@example.com",
                                                         "bob@example.com")


def test_exchange_online_dsn() -> None:
    _, r = report_of(flanker_bounce("office365.eml"))
    assert [f.email for f in r.failed] == ["noname@example.com"]
    assert r.failed[0].status.startswith("5.")


def test_a_delayed_recipient_is_not_failed() -> None:
    _, r = report_of(flanker_bounce("no-mx.eml"))
    assert r.failed == ()                          # Action: delayed
    assert r.returned_message_id == "19E44CA63F984902B7D654F8FF40F89D@bo"


def test_gmail_plain_text_bounce_names_its_failed_recipient_and_returned_id() -> None:
    _, r = report_of(flanker_bounce("gmail-invalid-address.eml"))
    assert not r.structured
    assert [f.email for f in r.failed] == ["awfawfawfawfawfaw@someserverhere.com"]
    assert r.returned_message_id == "CAKsfaBUUGqVZiaMrmH3TRPfq1odQPtM7Ey5YW1SgyJJRHtAjgw@mail.gmail.com"


def test_postfix_shaped_dsn_of_a_users_message() -> None:
    raw = SHAPES["postfix_shaped_dsn"].build("nobody@gone.test", "alice@corp.test",
                                              in_reply_to="<q42@corp.test>")
    _, r = report_of(raw)
    assert [(f.email, f.status) for f in r.failed] == [("nobody@gone.test", "5.1.1")]
    assert "550 5.1.1" in r.failed[0].reason()
    assert (r.returned_message_id, r.returned_from) == ("q42@corp.test", "alice@corp.test")


def test_a_message_that_is_no_report_has_none() -> None:
    p = parse(SHAPES["customer_mail"].build("bob@client.test", "alice@corp.test"),
              max_header_size=65536)
    assert p.report is None
