"""Organizational domains, alignment and DMARC record discovery."""

from __future__ import annotations

import pytest

from bccd.auth.dmarc import aligned, evaluate, fetch_record, organizational_domain
from bccd.auth.verdict import DnsTempError

pytestmark = pytest.mark.spec("4.2")


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("mail.corp.test", "corp.test"),       # default rule: unlisted TLD is a suffix
        ("corp.test", "corp.test"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("Example.COM.", "example.com"),
        ("x.xn--bcher-kva.test", "xn--bcher-kva.test"),
        ("x.bücher.test", "xn--bcher-kva.test"),
        ("test", "test"),                      # a public suffix is its own org domain
    ],
)
def test_organizational_domain(domain, org):
    assert organizational_domain(domain) == org


@pytest.mark.parametrize(
    ("ident", "from_domain", "mode", "expected"),
    [
        ("corp.test", "corp.test", "s", True),
        ("mail.corp.test", "corp.test", "s", False),
        ("mail.corp.test", "corp.test", "r", True),
        ("corp.test", "news.corp.test", "r", True),
        ("corp.test.evil.test", "corp.test", "r", False),
        ("evilcorp.test", "corp.test", "r", False),
        ("a.example.co.uk", "b.example.co.uk", "r", True),
        ("example.co.uk", "other.co.uk", "r", False),
        ("", "corp.test", "r", False),
    ],
)
def test_alignment(ident, from_domain, mode, expected):
    assert aligned(ident, from_domain, mode) is expected


def test_evaluate_prefers_dkim_and_reports_spf():
    ev = evaluate("corp.test", dkim_pass_domains=["x.test", "corp.test"], spf_result="pass",
                  spf_domain="corp.test")
    assert (ev.result, ev.dkim_domain, ev.spf_aligned) == ("pass", "corp.test", True)
    assert evaluate("corp.test", dkim_pass_domains=[], spf_result="fail",
                    spf_domain="corp.test").result == "fail"


def test_record_at_from_domain_wins(dns, resolver):
    dns.add_txt("_dmarc.mail.corp.test", "v=DMARC1; p=reject; adkim=s; aspf=s")
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=none")
    rec = fetch_record(resolver, "mail.corp.test")
    assert rec is not None
    assert (rec.domain, rec.policy, rec.adkim, rec.aspf) == ("mail.corp.test", "reject", "s", "s")


def test_org_fallback_uses_sp(dns, resolver):
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=none; sp=quarantine")
    rec = fetch_record(resolver, "mail.corp.test")
    assert rec is not None
    assert (rec.domain, rec.policy, rec.adkim) == ("corp.test", "quarantine", "r")
    assert fetch_record(resolver, "corp.test").policy == "none"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "records",
    [
        [],
        ["v=spf1 -all"],
        ["v=DMARC1; p=reject", "v=DMARC1; p=none"],   # two records: none applies
        ["v=DMARC2; p=reject"],
        ["v=DMARC1; p=reject; p=none"],               # duplicate tag
    ],
)
def test_no_usable_record(dns, resolver, records):
    for r in records:
        dns.add_txt("_dmarc.corp.test", r)
    assert fetch_record(resolver, "corp.test") is None


def test_invalid_policy_is_none(dns, resolver):
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=bogus; adkim=x")
    rec = fetch_record(resolver, "corp.test")
    assert rec is not None
    assert (rec.policy, rec.adkim) == ("none", "r")


def test_record_dns_failure_raises(dns, resolver):
    dns.servfail("_dmarc.corp.test")
    with pytest.raises(DnsTempError):
        fetch_record(resolver, "corp.test")
