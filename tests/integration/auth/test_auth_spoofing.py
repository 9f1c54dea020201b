"""The spoofing battery, end to end: real SMTP into a real ``bccd serve`` (``auth.mode =
"dmarc"``) that resolves through a real DNS server on loopback (SPEC §3, §4.1, §4.2).

Every case publishes its own DNS records, sends one message with its own envelope and
expects a reply code and enhanced status. Accepted copies must show their verdict in
``bccd mail show``; refused ones a ``rejections list`` row (code, reason, verdict) and no
trace of the body anywhere in the data directory. Temporary (DNS) failures store nothing
at all. The structural From cases carry a *valid* aligned DKIM signature: they prove the
From checks come first and always answer 5.7.1.
"""

from __future__ import annotations

import base64
import json
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.auth.smtpkit import (
    AUTHSERV_ID,
    Ctx,
    OpendkimKey,
    opendkim_testmsg,
    send,
    stored_anywhere,
)
from tests.support.authkit import Key, sign_without_from
from tests.support.dnsserver import DnsTestServer
from tests.support.server import BccdServer
from tests.support.wait import wait_until

pytestmark = [pytest.mark.spec("4.1"), pytest.mark.spec("4.2")]

Build = Callable[[Ctx], bytes]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    code: int
    enhanced: str
    auth: dict[str, Any] = field(default_factory=dict)   # expected subset of mail show's auth
    reply_has: str = ""        # expected in the reply text
    dkim_valid: bool = False   # the message carries a valid DKIM signature of From's domain
    domain: str = ""           # the user's domain when not derived from the id
    needs_opendkim: bool = False
    xfail: str = ""            # a known gap outside the authenticity layer
    results_has: tuple[str, ...] = ()   # expected in the stored Authentication-Results


CASES: list[Case] = []


def case(id: str, code: int, enhanced: str, **kw: Any) -> Callable[[Build], Build]:
    def register(fn: Build) -> Build:
        CASES.append(Case(id, fn, code, enhanced, **kw))
        return fn
    return register


OK = (250, "2.0.0")
SPOOF = (550, "5.7.1")
FAIL = (550, "5.7.26")
TEMP = (451, "4.7.0")
DKIM_PASS = {"dkim": "pass", "dmarc": "pass", "verdict": "pass"}


def aligned_signed(c: Ctx, raw: bytes, key: str = "rsa2048") -> bytes:
    c.publish_key(key)
    c.dmarc("p=reject")
    return c.sign(raw, key)


# ---------------------------------------------------------------- accepted
@case("rsa-aligned", *OK, auth={**DKIM_PASS, "spf": "none", "signing_domains": ["{dom}"]})
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message())


@case("ed25519-aligned", *OK, auth={**DKIM_PASS, "signing_domains": ["{dom}"]})
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(), "ed25519")


@case("opendkim-key-rsa-sha256", *OK, auth={**DKIM_PASS, "signing_domains": ["{dom}"]},
      needs_opendkim=True)
def _(c: Ctx) -> bytes:
    odk: OpendkimKey = c.opendkim
    c.publish_key(selector="odk", record=odk.record)   # as opendkim-genkey wrote it
    c.dmarc("p=reject")
    return c.sign(c.message(), "odk", selector="odk")


@case("spf-aligned-unsigned", *OK, auth={"dkim": "none", "spf": "pass", "dmarc": "pass",
                                          "verdict": "pass", "signing_domains": []})
def _(c: Ctx) -> bytes:
    c.spf()
    c.dmarc("p=reject")
    return c.message()


@case("null-sender-helo-spf", *OK, auth={"spf": "pass", "dmarc": "pass", "verdict": "pass"})
def _(c: Ctx) -> bytes:
    c.mail_from, c.helo = "", f"mx.{c.dom}"
    c.spf(domain=f"mx.{c.dom}")
    c.dmarc("p=reject")
    return c.message()


@case("subdomain-d-relaxed-pass", *OK, auth={**DKIM_PASS, "signing_domains": ["mail.{dom}"]})
def _(c: Ctx) -> bytes:
    c.publish_key(domain=f"mail.{c.dom}")
    c.dmarc("p=reject")
    return c.sign(c.message(), domain=f"mail.{c.dom}")


@case("two-signatures-bogus-then-valid", *OK,
      auth={**DKIM_PASS, "signing_domains": ["{dom}"]},
      results_has=("dkim=fail", "header.s=bogus", "dkim=pass", "header.s=good"))
def _(c: Ctx) -> bytes:
    c.publish_key(selector="good")
    c.publish_key(selector="bogus")                     # the rsa2048 key is published …
    valid = c.sign(c.message(), selector="good")
    return c.sign(valid, "rsa1024", selector="bogus")  # … the topmost is signed by another


@case("outlook-display-name-same-address", *OK, auth={**DKIM_PASS})
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(f'"alice@{c.dom}" <alice@{c.dom}>'))


@case("idn-punycode-from", *OK, domain="xn--bcher-kva.test",
      auth={**DKIM_PASS, "signing_domains": ["xn--bcher-kva.test"]})
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(f"Alice <alice@{c.dom}>"))


@case("idn-utf8-from-smtputf8", *OK, domain="xn--mnchen-3ya.test",
      auth={**DKIM_PASS, "signing_domains": ["xn--mnchen-3ya.test"]})
def _(c: Ctx) -> bytes:
    c.login, c.smtputf8 = "alice@münchen.test", True
    return aligned_signed(c, c.message("Alice <alice@münchen.test>"))


@case("forged-own-ar-on-spf-pass-is-replaced", *OK,
      auth={"dkim": "none", "spf": "pass", "dmarc": "pass", "verdict": "pass"})
def _(c: Ctx) -> bytes:
    c.spf()
    c.dmarc("p=reject")
    return c.message(extra_headers=(
        f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d={c.dom}; dmarc=pass",))


@case("unaligned-key-timeout-does-not-matter", *OK,
      auth={"dkim": "pass", "dmarc": "pass", "verdict": "pass", "signing_domains": ["{dom}"]},
      results_has=("dkim=temperror", "header.d=evil-"))
def _(c: Ctx) -> bytes:
    c.publish_key(domain=c.evil)
    c.dns.timeout(f"sel._domainkey.{c.evil}")
    return c.sign(aligned_signed(c, c.message()), domain=c.evil)


# ---------------------------------------------------------------- not authentic (5.7.26)
@case("unsigned-no-spf", *FAIL, reply_has="{dom}: no DKIM signature; SPF none")
def _(c: Ctx) -> bytes:
    c.dmarc("p=reject")
    return c.message()


@case("wrong-key", *FAIL, reply_has="did not verify")
def _(c: Ctx) -> bytes:
    c.publish_key("rsa2048")
    c.dmarc("p=reject")
    return c.sign(c.message(), "rsa1024")


@case("body-altered", *FAIL, reply_has="body hash did not verify")
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message()).replace(b"the numbers are attached",
                                                  b"wire 50k to IBAN XX00 today")


@case("header-altered", *FAIL, reply_has="did not verify")
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message()).replace(b"Subject: Quarterly numbers",
                                                  b"Subject: Urgent wire transfer")


@case("from-not-signed", *FAIL, reply_has="does not cover From")
def _(c: Ctx) -> bytes:
    c.publish_key()
    c.dmarc("p=reject")
    return sign_without_from(c.message(), c.keys["rsa2048"], c.dom, "sel")


@case("unaligned-d", *FAIL, reply_has="DKIM signature is from another domain")
def _(c: Ctx) -> bytes:
    c.publish_key(domain=c.evil)
    c.dmarc("p=reject")
    return c.sign(c.message(), domain=c.evil)


@case("subdomain-d-strict-fail", *FAIL, reply_has="not strictly aligned")
def _(c: Ctx) -> bytes:
    c.publish_key(domain=f"mail.{c.dom}")
    c.dmarc("p=reject; adkim=s")
    return c.sign(c.message(), domain=f"mail.{c.dom}")


@case("l-tag-with-appended-text", *FAIL, reply_has="(l=) leaves part of the body unsigned")
def _(c: Ctx) -> bytes:
    c.publish_key()
    c.dmarc("p=reject")
    signed = c.sign(c.message(), length=True)
    return signed + b"\r\nP.S. the bank details changed: IBAN XX00 0000\r\n"


@case("spf-pass-unaligned", *FAIL, reply_has="SPF passed for another domain")
def _(c: Ctx) -> bytes:
    c.mail_from = f"bounce@{c.evil}"
    c.spf(domain=c.evil)
    c.dmarc("p=reject")
    return c.message()


@case("spf-softfail-aligned", *FAIL, reply_has="SPF softfail")
def _(c: Ctx) -> bytes:
    c.spf("v=spf1 ip4:192.0.2.1 ~all")
    c.dmarc("p=reject")
    return c.message()


@case("dmarc-p-none-failing", *FAIL, reply_has="{dom}: no DKIM signature")
def _(c: Ctx) -> bytes:
    c.dmarc("p=none")
    return c.message()


@case("no-dmarc-record-failing", *FAIL)
def _(c: Ctx) -> bytes:
    return c.message()


@case("rsa-512-key", *FAIL, reply_has="shorter than 1024 bits")
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(), "rsa512")


@case("key-not-published", *FAIL, reply_has="no DKIM key is published")
def _(c: Ctx) -> bytes:
    c.dmarc("p=reject")
    return c.sign(c.message())


@case("opendkim-rsa-sha1", *FAIL, reply_has="rsa-sha1", needs_opendkim=True)
def _(c: Ctx) -> bytes:
    odk: OpendkimKey = c.opendkim
    record = "; ".join(t.strip() for t in odk.record.split(";") if not t.strip().startswith("h="))
    c.publish_key(selector="odk", record=record)
    c.dmarc("p=reject")
    return opendkim_testmsg(c.message(), odk.private, c.dom, c.workdir)


@case("forged-own-ar-unsigned", *FAIL, reply_has="no DKIM signature")
def _(c: Ctx) -> bytes:
    c.dmarc("p=reject")
    return c.message(extra_headers=(
        f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d={c.dom}; "
        f"spf=pass smtp.mailfrom={c.dom}; dmarc=pass header.from={c.dom}",))


# ---------------------------------------------------------------- structural From (5.7.1)
@case("multiple-from", *SPOOF, reply_has="more than one From header", dkim_valid=True)
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(from_headers=(f"Alice <alice@{c.dom}>",
                                                     f"CEO <ceo@{c.dom}>")))


@case("group-syntax", *SPOOF, reply_has="not a group", dkim_valid=True)
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(f"Sales: alice@{c.dom};"))


@case("address-list", *SPOOF, reply_has="one mailbox", dkim_valid=True)
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(f"alice@{c.dom}, mallory@{c.evil}"))


@case("display-name-trick", *SPOOF, reply_has="display name holds an address")
def _(c: Ctx) -> bytes:
    c.mail_from = f"mallory@{c.evil}"   # the attacker's own, fully authenticated domain
    c.spf(domain=c.evil)
    c.publish_key(domain=c.evil)
    c.dmarc("p=reject", domain=c.evil)
    return c.sign(c.message(f'"alice@{c.dom}" <mallory@{c.evil}>'), domain=c.evil)


@case("display-name-other-address", *SPOOF, reply_has="display name holds an address",
      dkim_valid=True)
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(f'"ceo@{c.dom}" <alice@{c.dom}>'))


@case("cve-2023-27043-paren", *SPOOF, reply_has="names more than one address", dkim_valid=True)
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(f"alice@{c.dom})<mallory@{c.evil}>"))


@case("cve-2023-27043-bracket", *SPOOF, reply_has="names more than one address", dkim_valid=True)
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(f"alice@{c.dom}]<mallory@{c.evil}>"))


@case("address-in-comment", *SPOOF, reply_has="more than one address")
def _(c: Ctx) -> bytes:
    c.publish_key(domain=c.evil)
    return c.sign(c.message(f"mallory@{c.evil} (alice@{c.dom})"), domain=c.evil)


@case("encoded-word-local-part", *SPOOF, reply_has="From address contains encoded words",
      dkim_valid=True)
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(f"Alice <=?utf-8?q?alice?=@{c.dom}>"))


@case("encoded-word-display-name-address", *SPOOF, reply_has="display name holds an address",
      dkim_valid=True)
def _(c: Ctx) -> bytes:
    word = base64.b64encode(f"ceo@{c.dom}".encode()).decode()
    return aligned_signed(c, c.message(f"=?utf-8?b?{word}?= <alice@{c.dom}>"))


@case("idn-homograph-of-user-domain", *SPOOF, reply_has="not a confirmed address")
def _(c: Ctx) -> bytes:
    fake = "xn--cme-homograph-v1k.test"       # "аcme-homograph.test", Cyrillic а
    c.publish_key(domain=fake)
    c.dmarc("p=reject", domain=fake)
    return c.sign(c.message(f"Alice <alice@{fake}>"), domain=fake)


@case("authentic-but-not-the-users-address", *SPOOF, reply_has="not a confirmed address",
      dkim_valid=True)
def _(c: Ctx) -> bytes:
    return aligned_signed(c, c.message(f"Bob <bob@{c.dom}>"))


# ---------------------------------------------------------------- DNS failures (4.7.0)
@case("dns-timeout-aligned-key", *TEMP)
def _(c: Ctx) -> bytes:
    c.dns.timeout(f"sel._domainkey.{c.dom}")
    return aligned_signed(c, c.message())


@case("dns-servfail-aligned-key", *TEMP)
def _(c: Ctx) -> bytes:
    c.dns.servfail(f"sel._domainkey.{c.dom}")
    return aligned_signed(c, c.message())


@case("dns-timeout-dmarc-record-relaxed-only", *TEMP)
def _(c: Ctx) -> bytes:
    c.publish_key(domain=f"mail.{c.dom}")
    c.dns.timeout(f"_dmarc.{c.dom}")
    return c.sign(c.message(), domain=f"mail.{c.dom}")


@case("dns-timeout-aligned-spf", *TEMP)
def _(c: Ctx) -> bytes:
    c.dmarc("p=reject")
    c.dns.timeout(c.dom)
    return c.message()


# ---------------------------------------------------------------- the battery
@pytest.fixture
def ctx(request: pytest.FixtureRequest, dns: DnsTestServer, keys: dict[str, Key],
        opendkim_key: OpendkimKey | None, tmp_path: Any) -> Ctx:
    c: Case = request.param
    if c.needs_opendkim and opendkim_key is None:
        pytest.skip("Debian package opendkim-tools is not installed")
    keyring = dict(keys)
    if opendkim_key is not None:
        keyring["odk"] = opendkim_key.key
    return Ctx(dom=c.domain or f"{c.id}.test", evil=f"evil-{c.id}.test", keys=keyring,
               dns=dns, workdir=tmp_path, opendkim=opendkim_key)


def _fmt(value: Any, c: Ctx) -> Any:
    if isinstance(value, str):
        return value.format(dom=c.dom)
    if isinstance(value, list):
        return [_fmt(v, c) for v in value]
    return value


def test_battery_has_enough_cases() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


PARAMS = [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)]
                       if c.xfail else []) for c in CASES]


@pytest.mark.parametrize("ctx", PARAMS, indirect=True)
def test_spoofing_battery(auth_server: BccdServer, ctx: Ctx, request: pytest.FixtureRequest) -> None:
    c: Case = request.node.callspec.params["ctx"]
    srv = auth_server
    raw = c.build(ctx)
    user = srv.setup_user(ctx.login, company="corp")
    if c.dkim_valid:
        assert ctx.dkim_passes_for(raw, ctx.dom), "the case must carry a valid aligned signature"

    code, text = send(srv, user["bcc_address"], raw, mail_from=ctx.mail_from, helo=ctx.helo,
                      smtputf8=ctx.smtputf8)

    assert (code, text.split(" ", 1)[0]) == (c.code, c.enhanced), text
    assert "\n" not in text and len(text) <= 500, "one line"
    if c.reply_has:
        assert _fmt(c.reply_has, ctx) in text
    rejections = srv.cli("rejections", "list", ctx.login)

    if code == 250:
        assert rejections == []
        [thread] = srv.cli("mail", "list", ctx.login)
        [msg] = srv.cli("mail", "show", str(thread["thread_id"]))["messages"]
        auth = msg["auth"]
        for k, v in c.auth.items():
            assert auth[k] == _fmt(v, ctx), (k, auth)
        results = auth["authentication_results"]
        assert results.startswith(f"{AUTHSERV_ID};"), results
        assert "dmarc=pass" in results and f"header.from={ctx.dom}" in results
        for part in c.results_has:
            assert part in results, (part, results)
        if c.id.startswith("forged-own-ar"):
            assert "dkim=none" in results and "header.d=" not in results
        assert "message_raw" in stored_anywhere(srv, user["id"], ctx.token)  # the probe works
        return

    # refused or postponed: no copy, no body, anywhere
    assert stored_anywhere(srv, user["id"], ctx.token) == []
    if code == 451:
        assert rejections == []
        events = [e for e in srv.log_events() if e.get("event") == "auth_dns_failure"
                  and e.get("sender") == ctx.login]
        assert events and "DNS" in events[-1]["detail"]
        return

    [row] = rejections
    assert row["code"] == f"{c.code} {c.enhanced}"
    assert row["recipient"] == user["bcc_address"]
    assert ctx.token not in json.dumps(row)
    logged = [e for e in srv.log_events() if e.get("event") == "copy_outcome"
              and e.get("rcpt") == user["bcc_address"]]
    assert logged and logged[-1]["outcome"] == "refused"
    if c.enhanced == "5.7.26":
        verdict = row["auth"]
        assert verdict["verdict"] == "fail" and verdict["dmarc"] == "fail"
        assert {"dkim", "spf", "arc", "dkim_domains", "results_header"} <= verdict.keys()
        assert verdict["header_from_domain"] == ctx.dom
        assert row["reason"].startswith(f"DMARC fail for {ctx.dom}")   # the detail
        assert logged[-1]["reason"] == row["reason"]
    else:
        assert row["auth"] == {}            # decided before authenticity
        assert row["reason"] == text.split(" ", 1)[1]


# ---------------------------------------------------------------- beyond one message
def _ctx(name: str, dns: DnsTestServer, keys: dict[str, Key], tmp_path: Any) -> Ctx:
    return Ctx(dom=f"{name}.test", evil=f"evil-{name}.test", keys=keys, dns=dns,
               workdir=tmp_path)


@pytest.mark.spec("3")
def test_dns_timeout_is_451_then_retry_after_recovery_is_stored_once(
        auth_server: BccdServer, dns: DnsTestServer, keys: dict[str, Key], tmp_path: Any) -> None:
    srv, c = auth_server, _ctx("timeout-retry", dns, keys, tmp_path)
    raw = aligned_signed(c, c.message())
    user = srv.setup_user(c.login, company="corp")
    dns.timeout(f"sel._domainkey.{c.dom}")

    started = time.monotonic()
    code, text = send(srv, user["bcc_address"], raw, mail_from=c.mail_from, helo=c.helo)
    assert (code, text) == (451, "4.7.0 Temporary DNS failure while checking the sender")
    assert time.monotonic() - started < 10
    assert stored_anywhere(srv, user["id"], c.token) == []
    assert srv.cli("rejections", "list", c.login) == []

    dns.clear()                          # the DNS recovers
    c.publish_key()
    c.dmarc("p=reject")
    for _ in range(2):                   # the retry, and a duplicate retry
        code, text = send(srv, user["bcc_address"], raw, mail_from=c.mail_from, helo=c.helo)
        assert code == 250, text
    [thread] = srv.cli("mail", "list", c.login)
    [msg] = srv.cli("mail", "show", str(thread["thread_id"]))["messages"]
    assert (msg["auth"]["verdict"], msg["auth"]["signing_domains"]) == ("pass", [c.dom])


def test_dns_answers_are_cached_across_messages(
        auth_server: BccdServer, dns: DnsTestServer, keys: dict[str, Key], tmp_path: Any) -> None:
    srv, c = auth_server, _ctx("dns-cache", dns, keys, tmp_path)
    c.publish_key()
    c.dmarc("p=reject")
    user = srv.setup_user(c.login, company="corp")
    for i in range(3):
        c.token, c.message_id = f"{c.token}-{i}", f"{c.message_id}-{i}"
        code, text = send(srv, user["bcc_address"], c.sign(c.message()),
                          mail_from=c.mail_from, helo=c.helo)
        assert code == 250, text
    asked = [q for q in dns.queries if q[0] in (f"sel._domainkey.{c.dom}", f"_dmarc.{c.dom}")]
    assert sorted(asked) == [(f"_dmarc.{c.dom}", "TXT"), (f"sel._domainkey.{c.dom}", "TXT")]


def test_event_loop_keeps_serving_while_a_message_waits_for_dns(
        auth_server: BccdServer, dns: DnsTestServer, keys: dict[str, Key], tmp_path: Any) -> None:
    """Authentication (DNS and RSA) runs in a worker thread: while one DATA waits for a DNS
    timeout, other SMTP sessions are answered at once."""
    srv, c = auth_server, _ctx("loop-free", dns, keys, tmp_path)
    raw = aligned_signed(c, c.message())
    user = srv.setup_user(c.login, company="corp")
    dns.timeout(f"sel._domainkey.{c.dom}")
    result: list[tuple[int, str]] = []
    t = threading.Thread(target=lambda: result.append(
        send(srv, user["bcc_address"], raw, mail_from=c.mail_from, helo=c.helo)))
    t.start()
    wait_until(lambda: any(q[0] == f"sel._domainkey.{c.dom}" for q in dns.queries), timeout=5,
               interval=0.01)
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=10) as s:
        assert s.ehlo("other.example")[0] == 250
        assert s.noop()[0] == 250
    assert time.monotonic() - started < 0.5
    t.join(10)
    assert result and result[0][0] == 451
