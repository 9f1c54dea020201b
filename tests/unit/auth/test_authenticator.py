"""Spoofing and acceptance battery at the Authenticator level (SPEC §4.2)."""

from __future__ import annotations

import pytest

from bccd.auth.authenticator import DmarcAuthenticator
from bccd.auth.dns import Resolver
from bccd.auth.results import FEATURES
from bccd.auth.verdict import AuthVerdict, DnsTempError
from tests.support.authkit import (
    AUTHSERV_ID,
    CLIENT_IP,
    Key,
    message,
    sign,
    sign_without_from,
)
from tests.support.dnsserver import DnsTestServer

pytestmark = pytest.mark.spec("4.2")


def evaluate(
    auth: DmarcAuthenticator,
    raw: bytes,
    *,
    header_from: str = "alice@corp.test",
    mail_from: str = "alice@corp.test",
    helo: str = "mail.corp.test",
    client_ip: str = CLIENT_IP,
) -> AuthVerdict:
    return auth.evaluate(raw, header_from=header_from, client_ip=client_ip, helo=helo,
                         mail_from=mail_from)


def publish(dns: DnsTestServer, key: Key, domain: str = "corp.test", selector: str = "sel") -> None:
    dns.add_txt(f"{selector}._domainkey.{domain}", key.record)


# -- spoofing: must fail ------------------------------------------------------------------


def test_unsigned_message_without_spf_fails(dns, authenticator):
    v = evaluate(authenticator, message())
    assert (v.verdict, v.dkim, v.spf, v.dmarc) == ("fail", "none", "none", "fail")
    assert v.reason.startswith("DMARC fail for corp.test (no DMARC record)")
    assert "no DKIM signature" in v.reason
    assert not v.passed


def test_signature_with_wrong_key_fails(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa1024"], "corp.test")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("fail", "fail")
    assert "signature did not verify" in v.reason


def test_body_altered_after_signing_fails(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa2048"], "corp.test").replace(b"attached", b"in Dropbox")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("fail", "fail")
    assert "body hash did not verify" in v.reason


def test_header_altered_after_signing_fails(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa2048"], "corp.test").replace(
        b"Subject: Quarterly numbers", b"Subject: Urgent wire transfer")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("fail", "fail")
    assert "signature did not verify" in v.reason


def test_signature_not_covering_from_is_ignored(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign_without_from(message(), keys["rsa2048"], "corp.test")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("fail", "policy")
    assert "does not cover From" in v.reason
    assert v.dkim_domains == ()


def test_valid_signature_of_unaligned_domain_fails(dns, authenticator, keys):
    publish(dns, keys["rsa2048"], "evil.test")
    raw = sign(message(), keys["rsa2048"], "evil.test")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim, v.dmarc) == ("fail", "pass", "fail")
    assert v.dkim_domains == ("evil.test",)
    assert "no passing signature aligned" in v.reason


def test_lookalike_parent_domain_is_not_aligned(dns, authenticator, keys):
    # corp.test.evil.test is evil.test's, not corp.test's
    publish(dns, keys["rsa2048"], "corp.test.evil.test")
    raw = sign(message(), keys["rsa2048"], "corp.test.evil.test")
    v = evaluate(authenticator, raw)
    assert v.verdict == "fail"
    assert "no passing signature aligned" in v.reason


def test_length_tag_with_appended_text_is_ignored(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa2048"], "corp.test", length=True)
    raw += b"\r\nP.S. Please pay invoice 42 to IBAN XX00 EVIL.\r\n"
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("fail", "policy")
    assert "l= leaves part of the body unsigned" in v.reason


def test_length_tag_covering_whole_body_passes(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa2048"], "corp.test", length=True)
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("pass", "pass")


def test_512_bit_key_is_ignored(dns, authenticator, keys):
    publish(dns, keys["rsa512"])
    raw = sign(message(), keys["rsa512"], "corp.test")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("fail", "policy")
    assert "key shorter than 1024 bits" in v.reason


def test_rsa_sha1_signature_is_ignored(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = dkim_sign_sha1(message(), keys["rsa2048"])
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("fail", "policy")
    assert "rsa-sha1" in v.reason


def dkim_sign_sha1(raw: bytes, key: Key) -> bytes:
    import dkim

    return bytes(dkim.sign(raw, b"sel", b"corp.test", key.private,
                           signature_algorithm=b"rsa-sha1")) + raw


def test_missing_key_is_permerror(dns, authenticator, keys):
    raw = sign(message(), keys["rsa2048"], "corp.test")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("fail", "permerror")
    assert "no key for signature" in v.reason


def test_second_from_header_added_on_top_fails(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = b"From: CEO <ceo@corp.test>\r\n" + sign(message(), keys["rsa2048"], "corp.test")
    v = evaluate(authenticator, raw, header_from="ceo@corp.test")
    assert (v.verdict, v.dkim) == ("fail", "fail")


def test_only_five_signatures_are_tried(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa2048"], "corp.test")
    for _ in range(5):
        raw = sign(raw, keys["rsa1024"], "corp.test")  # bogus: wrong key for "sel"
    v = evaluate(authenticator, raw)
    assert v.verdict == "fail"
    assert len(v.extra["dkim_signatures"]) == 5


def test_unaligned_spf_pass_fails(dns, authenticator):
    dns.add_txt("mailer.test", f"v=spf1 ip4:{CLIENT_IP} -all")
    v = evaluate(authenticator, message(), mail_from="bounce@mailer.test")
    assert (v.verdict, v.spf, v.spf_domain) == ("fail", "pass", "mailer.test")
    assert "spf pass for mailer.test (not aligned)" in v.reason


def test_aligned_spf_softfail_fails(dns, authenticator):
    dns.add_txt("corp.test", "v=spf1 ip4:198.51.100.0/24 ~all")
    v = evaluate(authenticator, message())
    assert (v.verdict, v.spf) == ("fail", "softfail")


def test_dmarc_p_none_with_failing_auth_still_fails(dns, authenticator):
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=none; rua=mailto:dmarc@corp.test")
    v = evaluate(authenticator, message())
    assert (v.verdict, v.dmarc, v.policy) == ("fail", "fail", "none")
    assert v.reason.startswith("DMARC fail for corp.test (p=none)")


def test_spoofed_authentication_results_with_our_id_are_ignored(dns, authenticator):
    forged = f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=corp.test; dmarc=pass"
    raw = message(extra_headers=(forged,))
    v = evaluate(authenticator, raw)
    assert v.verdict == "fail"
    assert "trusted_results" not in v.extra
    assert authenticator.trusted_results(raw) == []


def test_own_id_is_never_trusted_even_if_configured(resolver):
    auth = DmarcAuthenticator(resolver, authserv_id=AUTHSERV_ID,
                         trusted_authserv_ids=[AUTHSERV_ID.upper(), "relay.corp.test"])
    raw = message(extra_headers=(
        f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=corp.test",
        "Authentication-Results: relay.corp.test;\r\n dkim=pass header.d=corp.test",
        "Authentication-Results: stranger.test; dmarc=pass header.from=corp.test",
    ))
    got = auth.trusted_results(raw)
    assert [h.authserv_id for h in got] == ["relay.corp.test"]


def test_trusted_relay_results_are_reported_not_obeyed(dns, authenticator):
    raw = message(extra_headers=("Authentication-Results: relay.corp.test; dmarc=pass "
                                 "header.from=corp.test",))
    v = evaluate(authenticator, raw)
    assert v.verdict == "fail"
    assert v.extra["trusted_results"] == ["relay.corp.test; dmarc=pass header.from=corp.test"]


# -- acceptance: must pass ----------------------------------------------------------------


def test_aligned_rsa_signature_passes(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa2048"], "corp.test")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim, v.dmarc) == ("pass", "pass", "pass")
    assert v.dkim_domains == ("corp.test",)
    assert v.reason == "DMARC pass: DKIM signature of corp.test aligned with corp.test"
    assert v.passed


def test_ed25519_signature_passes(dns, authenticator, keys):
    publish(dns, keys["ed25519"], selector="ed")
    raw = sign(message(), keys["ed25519"], "corp.test", "ed")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("pass", "pass")
    assert "header.a=ed25519-sha256" in v.results_header


def test_first_signature_bogus_second_valid_passes(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    publish(dns, keys["rsa2048"], selector="bogus")
    raw = sign(message(), keys["rsa2048"], "corp.test")
    raw = sign(raw, keys["rsa1024"], "corp.test", "bogus")  # on top, wrong key
    v = evaluate(authenticator, raw)
    assert v.verdict == "pass"
    assert [s["result"] for s in v.extra["dkim_signatures"]] == ["fail", "pass"]
    assert v.dkim == "pass"


def test_subdomain_signature_relaxed_alignment_passes(dns, authenticator, keys):
    publish(dns, keys["rsa2048"], "mail.corp.test")
    raw = sign(message(), keys["rsa2048"], "mail.corp.test")
    v = evaluate(authenticator, raw)
    assert v.verdict == "pass"
    assert v.reason == "DMARC pass: DKIM signature of mail.corp.test aligned with corp.test"


def test_subdomain_signature_strict_alignment_fails(dns, authenticator, keys):
    publish(dns, keys["rsa2048"], "mail.corp.test")
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=reject; adkim=s")
    raw = sign(message(), keys["rsa2048"], "mail.corp.test")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim, v.policy) == ("fail", "pass", "reject")
    assert "no passing signature aligned" in v.reason


def test_aligned_spf_pass_without_dkim_passes(dns, authenticator):
    dns.add_txt("corp.test", f"v=spf1 ip4:{CLIENT_IP} -all")
    v = evaluate(authenticator, message())
    assert (v.verdict, v.spf, v.dkim) == ("pass", "pass", "none")
    assert v.reason == "DMARC pass: SPF pass for corp.test aligned with corp.test"


def test_spf_strict_alignment_refuses_subdomain_sender(dns, authenticator):
    dns.add_txt("bounces.corp.test", f"v=spf1 ip4:{CLIENT_IP} -all")
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=quarantine; aspf=s")
    v = evaluate(authenticator, message(), mail_from="b@bounces.corp.test")
    assert (v.verdict, v.spf, v.policy) == ("fail", "pass", "quarantine")


def test_null_sender_uses_helo_identity(dns, authenticator):
    dns.add_txt("mail.corp.test", f"v=spf1 ip4:{CLIENT_IP} -all")
    v = evaluate(authenticator, message(), mail_from="", helo="mail.corp.test")
    assert (v.verdict, v.spf, v.spf_domain) == ("pass", "pass", "mail.corp.test")
    assert v.extra["spf_identity"] == "helo"
    assert "smtp.helo=mail.corp.test" in v.results_header


def test_dmarc_record_found_at_organizational_domain(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=quarantine; sp=reject; adkim=s")
    raw = sign(message("alice@mail.corp.test"), keys["rsa2048"], "corp.test")
    v = evaluate(authenticator, raw, header_from="alice@mail.corp.test",
                 mail_from="alice@mail.corp.test")
    # the org record applies (sp=, adkim=s): d=corp.test is not strictly aligned
    assert (v.verdict, v.policy, v.extra["dmarc_record"]) == ("fail", "reject", "corp.test")
    assert ("_dmarc.mail.corp.test", "TXT") in dns.queries
    assert ("_dmarc.corp.test", "TXT") in dns.queries


def test_dmarc_record_at_organizational_domain_relaxed_passes(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=reject")
    raw = sign(message("alice@mail.corp.test"), keys["rsa2048"], "corp.test")
    v = evaluate(authenticator, raw, header_from="alice@mail.corp.test")
    assert (v.verdict, v.policy, v.header_from_domain) == ("pass", "reject", "mail.corp.test")


def test_idn_from_domain_in_punycode_passes(dns, authenticator, keys):
    publish(dns, keys["rsa2048"], "xn--bcher-kva.test")
    raw = sign(message("anna@xn--bcher-kva.test"), keys["rsa2048"], "xn--bcher-kva.test")
    v = evaluate(authenticator, raw, header_from="anna@xn--bcher-kva.test",
                 mail_from="anna@xn--bcher-kva.test")
    assert (v.verdict, v.dkim_domains) == ("pass", ("xn--bcher-kva.test",))
    assert v.header_from_domain == "xn--bcher-kva.test"


def test_idn_lookalike_domain_is_not_aligned(dns, authenticator, keys):
    # bücher.test vs. bucher.test: a homograph is a different domain
    publish(dns, keys["rsa2048"], "bucher.test")
    raw = sign(message("anna@xn--bcher-kva.test"), keys["rsa2048"], "bucher.test")
    v = evaluate(authenticator, raw, header_from="anna@xn--bcher-kva.test")
    assert v.verdict == "fail"


def test_unicode_from_domain_is_normalized_to_a_label(dns, authenticator, keys):
    publish(dns, keys["rsa2048"], "xn--bcher-kva.test")
    raw = sign(message("anna@xn--bcher-kva.test"), keys["rsa2048"], "xn--bcher-kva.test")
    v = evaluate(authenticator, raw, header_from="anna@bücher.test")
    assert (v.verdict, v.header_from_domain) == ("pass", "xn--bcher-kva.test")


# -- DNS failures -------------------------------------------------------------------------


def test_key_lookup_timeout_raises_temp_error(dns, authenticator, keys):
    dns.timeout("sel._domainkey.corp.test")
    raw = sign(message(), keys["rsa2048"], "corp.test")
    with pytest.raises(DnsTempError, match=r"DKIM key for d=corp\.test"):
        evaluate(authenticator, raw)


def test_key_lookup_servfail_raises_temp_error(dns, authenticator, keys):
    dns.servfail("sel._domainkey.corp.test")
    raw = sign(message(), keys["rsa2048"], "corp.test")
    with pytest.raises(DnsTempError, match="server failure"):
        evaluate(authenticator, raw)


def test_spf_dns_failure_does_not_matter_when_dkim_passes(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    dns.servfail("corp.test")
    raw = sign(message(), keys["rsa2048"], "corp.test")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim, v.spf) == ("pass", "pass", "temperror")


def test_spf_timeout_for_aligned_sender_raises_temp_error(dns, authenticator):
    dns.timeout("corp.test")
    with pytest.raises(DnsTempError, match=r"SPF for corp\.test"):
        evaluate(authenticator, message())


def test_spf_dns_failure_for_unaligned_sender_is_a_plain_failure(dns, authenticator):
    dns.servfail("mailer.test")
    v = evaluate(authenticator, message(), mail_from="bounce@mailer.test")
    assert (v.verdict, v.spf) == ("fail", "temperror")


def test_unaligned_key_failure_does_not_matter(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    dns.servfail("sel._domainkey.tracker.test")
    raw = sign(sign(message(), keys["rsa2048"], "corp.test"), keys["rsa2048"], "tracker.test")
    v = evaluate(authenticator, raw)
    assert v.verdict == "pass"
    assert [s["result"] for s in v.extra["dkim_signatures"]] == ["temperror", "pass"]


def test_dmarc_record_failure_with_exact_alignment_passes(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    dns.servfail("_dmarc.corp.test")
    raw = sign(message(), keys["rsa2048"], "corp.test")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.policy) == ("pass", "")
    assert "dmarc_record_error" in v.extra


def test_dmarc_record_failure_with_relaxed_alignment_raises(dns, authenticator, keys):
    publish(dns, keys["rsa2048"], "mail.corp.test")
    dns.servfail("_dmarc.corp.test")
    raw = sign(message(), keys["rsa2048"], "mail.corp.test")
    with pytest.raises(DnsTempError, match=r"DMARC record for corp\.test"):
        evaluate(authenticator, raw)


# -- recording ----------------------------------------------------------------------------


def test_results_header_is_rfc8601_with_our_authserv_id(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=reject")
    raw = sign(message(), keys["rsa2048"], "corp.test")
    v = evaluate(authenticator, raw)
    parsed = FEATURES.parse_value(v.results_header)
    assert parsed.authserv_id == AUTHSERV_ID
    by_method = {r.method: r for r in parsed.results}
    assert by_method["dkim"].result == "pass"
    assert by_method["dkim"].header_d == "corp.test"
    assert by_method["spf"].result == "none"
    assert by_method["spf"].smtp_mailfrom == "alice@corp.test"
    assert by_method["dmarc"].result == "pass"
    assert by_method["dmarc"].header_from == "corp.test"
    assert by_method["dmarc"].policy == "reject"
    assert by_method["arc"].result == "none"


def test_results_header_reports_failure_reason(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa2048"], "corp.test").replace(b"attached", b"gone")
    v = evaluate(authenticator, raw)
    parsed = FEATURES.parse_value(v.results_header)
    dkim_result = parsed.results[0]
    assert (dkim_result.method, dkim_result.result) == ("dkim", "fail")
    assert dkim_result.reason == "body hash did not verify"


def test_verdict_is_json_ready(dns, authenticator, keys):
    import json

    publish(dns, keys["rsa2048"])
    v = evaluate(authenticator, sign(message(), keys["rsa2048"], "corp.test"))
    assert json.loads(json.dumps(v.as_dict()))["dkim_domains"] == ["corp.test"]


def test_dns_answers_are_cached(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa2048"], "corp.test")
    evaluate(authenticator, raw)
    asked = len(dns.queries)
    assert evaluate(authenticator, raw).verdict == "pass"
    assert len(dns.queries) == asked


def test_authenticators_with_different_resolvers_do_not_mix(dns, keys):
    # SPF's module-level hook must use the resolver of the call in progress
    dns.add_txt("corp.test", f"v=spf1 ip4:{CLIENT_IP} -all")
    good = DmarcAuthenticator(Resolver(["127.0.0.1"], port=dns.port, timeout=5),
                         authserv_id=AUTHSERV_ID)
    dead = DmarcAuthenticator(Resolver(["127.0.0.1"], port=9, timeout=0.3), authserv_id=AUTHSERV_ID)
    assert evaluate(good, message()).verdict == "pass"
    with pytest.raises(DnsTempError):
        evaluate(dead, message())
    assert evaluate(good, message()).verdict == "pass"


@pytest.mark.parametrize(
    ("helo", "mail_from"),
    [
        ("a@b; dmarc=pass header.from=corp.test", ""),
        ("mail.corp.test", "x@corp.test; dmarc=pass"),
        ('mail.corp.test', '"a; dmarc=pass"@corp.test'),
        ("x (dmarc=pass); dkim=pass", ""),
    ],
)
def test_sender_controlled_values_cannot_forge_results(dns, authenticator, helo, mail_from):
    v = evaluate(authenticator, message(), helo=helo, mail_from=mail_from)
    parsed = FEATURES.parse_value(v.results_header)
    assert [(r.method, r.result) for r in parsed.results] == [
        ("dkim", "none"), ("spf", "none"), ("dmarc", "fail"), ("arc", "none")]


def test_malformed_signature_tags_cannot_forge_results(dns, authenticator):
    forged = (b"DKIM-Signature: v=1; a=rsa-sha256; d=x@y dmarc=pass; s=a b; "
              b"i=@evil.test (dmarc=pass); h=from; bh=AAAA; b=AAAA\r\n")
    v = evaluate(authenticator, forged + message())
    parsed = FEATURES.parse_value(v.results_header)
    assert [(r.method, r.result) for r in parsed.results] == [
        ("dkim", "permerror"), ("spf", "none"), ("dmarc", "fail"), ("arc", "none")]


def test_message_dkimpy_cannot_parse_is_permerror(dns, authenticator, keys):
    publish(dns, keys["rsa2048"])
    raw = sign(message(), keys["rsa2048"], "corp.test")
    raw = raw.replace(b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\nnot a header line\r\n")
    v = evaluate(authenticator, raw)
    assert (v.verdict, v.dkim) == ("fail", "permerror")
    assert "unparsable message" in v.reason


def test_concurrent_evaluations_keep_their_own_resolver(dns):
    from concurrent.futures import ThreadPoolExecutor

    dns.add_txt("corp.test", f"v=spf1 ip4:{CLIENT_IP} -all")
    good = DmarcAuthenticator(Resolver(["127.0.0.1"], port=dns.port, timeout=5),
                         authserv_id=AUTHSERV_ID)
    dead = DmarcAuthenticator(Resolver(["127.0.0.1"], port=9, timeout=0.3), authserv_id=AUTHSERV_ID)

    def run(auth: DmarcAuthenticator) -> str:
        try:
            return evaluate(auth, message()).verdict
        except DnsTempError:
            return "tempfail"

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(run, [good, dead] * 8))
    assert got == ["pass", "tempfail"] * 8
