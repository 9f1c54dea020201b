"""What bccd changes around dkimpy's verification gives dkimpy's own answers: the key of
a record is parsed once (``bccd.auth.dkim``), each signature's header prepared once, and
ARC is not read again for a message without an ARC set (``bccd.auth.arc``)."""

from __future__ import annotations

import dkim
import pytest

from bccd.auth import dkim as bccd_dkim
from bccd.auth.arc import NOT_SIGNED, verify_arc
from bccd.auth.dns import Resolver
from tests.support.authkit import Key, message, sign
from tests.support.dnsserver import DnsTestServer


def test_the_key_memo_is_installed() -> None:
    assert dkim.evaluate_pk.__module__ == "bccd.auth.dkim"


def test_a_memoized_key_is_the_key_dkimpy_parses(keys: dict[str, Key]) -> None:
    original = dkim.evaluate_pk.bccd_cache.__wrapped__  # type: ignore[attr-defined]
    for key in keys.values():
        record = key.record.encode()
        assert dkim.evaluate_pk(b"sel._domainkey.corp.test.", record) == \
            original(b"sel._domainkey.corp.test.", record)
        assert dkim.evaluate_pk(b"sel._domainkey.corp.test.", record) == \
            original(b"sel._domainkey.corp.test.", record)


@pytest.mark.parametrize("record", [None, b"", b"v=DKIM1; k=rsa; p=AAAA", b"k=rsa; p"])
def test_an_unusable_record_fails_every_time(record: bytes | None) -> None:
    for _ in range(2):
        with pytest.raises(dkim.KeyFormatError):
            dkim.evaluate_pk(b"sel._domainkey.corp.test.", record)


def test_a_rotated_key_is_used_at_once(dns: DnsTestServer, keys: dict[str, Key]) -> None:
    raw = sign(message(), keys["rsa2048"], "corp.test")
    dns.add_txt("sel._domainkey.corp.test", keys["rsa2048"].record)
    resolver = Resolver(["127.0.0.1"], port=dns.port, timeout=5)
    assert [s.result for s in bccd_dkim.verify_signatures(raw, resolver)] == ["pass"]
    dns.clear()
    dns.add_txt("sel._domainkey.corp.test", keys["rsa1024"].record)
    resolver.flush()
    [after] = bccd_dkim.verify_signatures(raw, resolver)
    assert after.result == "fail"


def test_header_names_are_what_dkimpy_read(dns: DnsTestServer, keys: dict[str, Key]) -> None:
    raw = sign(message(extra_headers=("ARC-Seal: i=1; cv=none",)), keys["rsa2048"], "corp.test")
    resolver = Resolver(["127.0.0.1"], port=dns.port, timeout=5)
    _, names = bccd_dkim.verify_message(raw, resolver)
    assert names == [name for name, _ in dkim.DKIM(raw).headers]
    assert b"ARC-Seal" in names
    assert verify_arc(raw, resolver, header_names=names) == verify_arc(raw, resolver) != NOT_SIGNED
    assert bccd_dkim.verify_message(b"\x01bad header\r\n\r\nbody", resolver) == ([], None)


def test_no_arc_set_is_none_without_reading_again(dns: DnsTestServer) -> None:
    resolver = Resolver(["127.0.0.1"], port=dns.port, timeout=5)
    raw = message()
    _, names = bccd_dkim.verify_message(raw, resolver)
    assert verify_arc(raw, resolver, header_names=names) == verify_arc(raw, resolver) == NOT_SIGNED
