"""Regression cases from the shared corpora (read-only, referenced by path).

- ``mailauth/dkim-ec``: the RFC 8463 example message signed ed25519 and RSA, with its DNS.
- ``mailauth/*.eml``: real-world messages (Gmail ARC chains, Mailgun double signatures,
  MIME). Their signers' keys are not in the corpus, so as received they must fail cleanly
  (no key); re-signed with the corpus keys (``private-*.pem``) they must pass.
- ``flanker/dkim``: canonicalization vectors; dkimpy's simple and relaxed canonicalization
  must reproduce them (``nofws`` is DomainKeys-only and does not apply to DKIM).
"""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import dkim
import pytest
from dkim.canonicalization import CanonicalizationPolicy

from bccd.auth.dkim import verify_signatures
from bccd.auth.results import FEATURES
from bccd.auth.spf import check_spf
from tests.support.authkit import AUTHSERV_ID, FLANKER, MAILAUTH, sign
from tests.support.dnsserver import DnsTestServer

pytestmark = pytest.mark.spec("4.2")

DKIM_EC = MAILAUTH / "dkim-ec"
REAL_MESSAGES = sorted(p.name for p in MAILAUTH.glob("*.eml"))


def load_dns_json(server: DnsTestServer, path: Path) -> None:
    for name, types in json.loads(path.read_text()).items():
        for rtype, records in types.items():
            for record in records:
                server.add(name, rtype, record)


def from_address(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return str(msg["From"].addresses[0].addr_spec).lower()


# -- RFC 8463 example --------------------------------------------------------------------


def test_rfc8463_example_both_signatures_pass(dns, resolver):
    load_dns_json(dns, DKIM_EC / "dns.json")
    results = verify_signatures((DKIM_EC / "signed.eml").read_bytes(), resolver)
    assert [(r.result, r.algorithm, r.selector) for r in results] == [
        ("pass", "ed25519-sha256", "brisbane"),
        ("pass", "rsa-sha256", "test"),
    ]


def test_rfc8463_example_is_authentic(dns, authenticator):
    load_dns_json(dns, DKIM_EC / "dns.json")
    v = authenticator.evaluate((DKIM_EC / "signed.eml").read_bytes(),
                               header_from="joe@football.example.com", client_ip="192.0.2.99",
                               helo="mail.football.example.com",
                               mail_from="joe@football.example.com")
    assert (v.verdict, v.dkim_domains, v.spf) == ("pass", ("football.example.com",), "softfail")


@pytest.mark.parametrize(("ip", "result"), [("213.165.64.12", "pass"), ("192.0.2.1", "softfail")])
def test_rfc8463_example_spf_record(dns, resolver, ip, result):
    load_dns_json(dns, DKIM_EC / "dns.json")
    got = check_spf(resolver, client_ip=ip, mail_from="joe@football.example.com", helo="x")
    assert got.result == result


def test_rfc8463_example_resigned_with_its_private_keys(dns, resolver):
    load_dns_json(dns, DKIM_EC / "dns.json")
    raw = (DKIM_EC / "signed.eml").read_bytes()
    body_start = raw.index(b"From:")
    unsigned = raw[body_start:]
    ed = (DKIM_EC / "private-ec.key").read_bytes().strip()
    rsa = (DKIM_EC / "private-rsa.key").read_bytes()
    signed = dkim.sign(unsigned, b"brisbane", b"football.example.com", ed,
                       signature_algorithm=b"ed25519-sha256") + unsigned
    signed = dkim.sign(signed, b"test", b"football.example.com", rsa) + signed
    assert [r.result for r in verify_signatures(signed, resolver)] == ["pass", "pass"]


# -- real-world messages -----------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_MESSAGES)
def test_real_message_without_keys_fails_cleanly(dns, authenticator, name):
    raw = (MAILAUTH / name).read_bytes()
    sender = from_address(raw)
    v = authenticator.evaluate(raw, header_from=sender, client_ip="192.0.2.99",
                               helo="mail.example.net", mail_from=sender)
    assert v.verdict == "fail"
    assert v.dkim in ("none", "permerror")
    assert v.arc in ("none", "fail")
    assert FEATURES.parse_value(v.results_header).authserv_id == AUTHSERV_ID


@pytest.mark.parametrize("name", REAL_MESSAGES)
@pytest.mark.parametrize("key_name", ["rsa2048", "ed25519"])
def test_real_message_resigned_with_corpus_key_passes(dns, authenticator, keys, name, key_name):
    raw = (MAILAUTH / name).read_bytes()
    sender = from_address(raw)
    domain = sender.rpartition("@")[2]
    key = keys[key_name]
    dns.add_txt(f"corpus._domainkey.{domain}", key.record)
    signed = sign(raw, key, domain, "corpus", canonicalize=(b"relaxed", b"relaxed"))
    v = authenticator.evaluate(signed, header_from=sender, client_ip="192.0.2.99",
                               helo="mail.example.net", mail_from=sender)
    assert (v.verdict, v.dkim_domains) == ("pass", (domain,))
    assert v.extra["dkim_signatures"][0]["result"] == "pass"


@pytest.mark.parametrize("name", ["arc-pass.eml", "authtest.eml", "message3.eml"])
def test_google_results_are_reported_only_when_trusted(resolver, name):
    from bccd.auth.authenticator import DmarcAuthenticator

    raw = (MAILAUTH / name).read_bytes()
    trusting = DmarcAuthenticator(resolver, authserv_id=AUTHSERV_ID,
                             trusted_authserv_ids=["mx.google.com"])
    assert [h.authserv_id for h in trusting.trusted_results(raw)] == ["mx.google.com"]
    assert DmarcAuthenticator(resolver, authserv_id=AUTHSERV_ID).trusted_results(raw) == []
    posing = DmarcAuthenticator(resolver, authserv_id="mx.google.com",
                           trusted_authserv_ids=["mx.google.com"])
    assert posing.trusted_results(raw) == []


# -- canonicalization vectors ------------------------------------------------------------

FLANKER_DKIM = FLANKER / "dkim"
VECTORS = sorted(p.suffix[1:] for p in FLANKER_DKIM.glob("email.*"))


@pytest.mark.parametrize("mode", ["simple", "relaxed"])
@pytest.mark.parametrize("number", VECTORS)
def test_canonicalization_vectors(number, mode):
    raw = (FLANKER_DKIM / f"email.{number}").read_bytes()
    expected = (FLANKER_DKIM / f"{mode}.expected.{number}").read_bytes()
    policy = CanonicalizationPolicy.from_c_value(f"{mode}/{mode}".encode())
    headers, body = dkim.rfc822_parse(raw) if raw else ([], b"")
    canonical = b"".join(name + b":" + value
                         for name, value in policy.canonicalize_headers(headers))
    assert canonical + b"\r\n" + policy.canonicalize_body(body) == expected, (
        (FLANKER_DKIM / f"purpose.{number}").read_text().strip())


def test_canonicalization_vectors_present():
    assert len(VECTORS) == 21
