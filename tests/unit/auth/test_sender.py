"""Strict From parsing (SPEC §4.1): exactly one From with one mailbox, no defects, no
group syntax, no encoded-word or display-name tricks; every refusal is 5.7.1 with one line."""

from __future__ import annotations

import pytest

from bccd.auth.sender import FromRefused, parse_from
from bccd.ingest.outcome import classify

pytestmark = pytest.mark.spec("4.1")


@pytest.mark.parametrize(("value", "email", "name"), [
    ("alice@corp.test", "alice@corp.test", ""),
    ("Alice <alice@corp.test>", "alice@corp.test", "Alice"),
    ("Alice <Alice@CORP.test>", "alice@corp.test", "Alice"),
    ('"alice@corp.test" <alice@corp.test>', "alice@corp.test", "alice@corp.test"),  # Outlook
    ('"Smith, Alice" <alice@corp.test>', "alice@corp.test", "Smith, Alice"),
    ("=?utf-8?q?Al=C3=AFce?= <alice@corp.test>", "alice@corp.test", "Alïce"),
    ("Alice <alice@xn--bcher-kva.test>", "alice@xn--bcher-kva.test", "Alice"),
    ("Alice <alice@bücher.test>", "alice@xn--bcher-kva.test", "Alice"),
    ("Alice\r\n <alice@corp.test>", "alice@corp.test", "Alice"),                  # folded
])
def test_accepted(value, email, name):
    mb = parse_from([value])
    assert (mb.email, mb.name) == (email, name)


@pytest.mark.parametrize(("values", "reason"), [
    ([], "The message has no From header"),
    (["alice@corp.test", "ceo@corp.test"], "The message has more than one From header"),
    (["Sales: alice@corp.test;"], "The From header must hold one mailbox, not a group or a list"),
    (["Undisclosed:;"], "The From header must hold one mailbox, not a group or a list"),
    (["alice@corp.test, mallory@evil.test"],
     "The From header must hold one mailbox, not a group or a list"),
    (['"ceo@corp.test" <mallory@evil.test>'],
     "The From display name holds an address other than the sender's"),
    (['"ceo@corp.test" <alice@corp.test>'],
     "The From display name holds an address other than the sender's"),
    (["=?utf-8?b?Y2VvQGNvcnAudGVzdA==?= <alice@corp.test>"],           # "ceo@corp.test"
     "The From display name holds an address other than the sender's"),
    # CVE-2023-27043: parseaddr() reads these as alice@corp.test
    (["alice@corp.test)<mallory@evil.test>"], "The From header names more than one address"),
    (["alice@corp.test]<mallory@evil.test>"], "The From header names more than one address"),
    (["alice@corp.test <mallory@evil.test>"], "The From header names more than one address"),
    (["mallory@evil.test (alice@corp.test)"], "The From header names more than one address"),
    (["alice(@corp.test)@evil.test"], "The From header is ambiguous"),
    (["=?utf-8?q?alice?=@corp.test"], "The From address contains encoded words"),
    (["Alice <=?utf-8?q?alice?=@corp.test>"], "The From address contains encoded words"),
    (["Alice <alice@=?utf-8?q?corp?=.test>"], "The From address contains encoded words"),
    (["Alice <alice@corp.test"], "The From header is malformed"),
    (["Alice <alice@@corp.test>"], "The From header is malformed"),
    (["Alice <alice@corp.test>\x00"], "The From header contains control characters"),
    (["Alice <>"], "The From header is malformed"),
])
def test_refused_with_one_line(values, reason):
    with pytest.raises(FromRefused) as err:
        parse_from(values)
    assert err.value.reason == reason
    reply = str(classify(err.value).smtp_reply())
    assert reply == f"550 5.7.1 {reason}"


def test_rfc6532_utf8_octets_are_decoded_and_invalid_ones_refused():
    # what the bytes parser hands over for raw UTF-8 / Latin-1 octets (surrogate escapes)
    utf8 = "Alice <alice@münchen.test>".encode().decode("ascii", "surrogateescape")
    assert parse_from([utf8]).email == "alice@xn--mnchen-3ya.test"
    latin1 = "Alice <alice@münchen.test>".encode("latin-1").decode("ascii", "surrogateescape")
    with pytest.raises(FromRefused) as err:
        parse_from([latin1])
    assert err.value.reason == "The From header is not valid UTF-8"
