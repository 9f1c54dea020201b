"""How authenticity is wired into ingest and start-up: the one-line 5.7.26 reply, the
451 4.7.0 for DNS, evaluation off the event loop, fail-closed, and the resolver config
error at start."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import dns.resolver
import pytest

from bccd.auth.authenticator import build_authenticator
from bccd.auth.dns import Resolver, ResolverConfigError
from bccd.auth.sender import Mailbox
from bccd.auth.verdict import AuthVerdict, DnsTempError
from bccd.config import ConfigError, Settings
from bccd.ingest.outcome import DnsTemporaryFailure, NotAuthentic, TemporaryError
from bccd.ingest.pipeline import Pipeline
from bccd.ingest.types import Envelope
from tests.unit.auth.authkit import CLIENT_IP, message, sign

MAILBOX = Mailbox(email="alice@corp.test", name="Alice")
ENVELOPE = Envelope(mail_from="alice@corp.test", client_ip=CLIENT_IP, helo="mail.corp.test")


def _evaluate(authenticator: Any, raw: bytes) -> AuthVerdict:
    return authenticator.evaluate(raw, header_from="alice@corp.test", client_ip=CLIENT_IP,
                                  helo="mail.corp.test", mail_from="alice@corp.test")


def _reply(verdict: AuthVerdict) -> str:
    return str(NotAuthentic(verdict.reason, verdict=verdict.as_dict()).smtp_reply())


# -- the reply a refused sender sees --------------------------------------------------------


def test_unsigned_reply_names_the_domain_and_what_is_missing(dns, authenticator):
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=reject")
    v = _evaluate(authenticator, message())
    assert _reply(v) == ("550 5.7.26 Message failed DMARC authentication for the From domain "
                         "corp.test: no DKIM signature; SPF none")
    assert v.reason.startswith("DMARC fail for corp.test (p=reject)")   # the detail: logs


@pytest.mark.parametrize(("setup", "phrase"), [
    ("wrong-key", "the DKIM signature did not verify"),
    ("body", "the DKIM body hash did not verify"),
    ("unaligned", "the DKIM signature is from another domain"),
    ("strict", "not strictly aligned (DMARC adkim=s)"),
    ("small-key", "the DKIM key is shorter than 1024 bits"),
    ("no-key", "no DKIM key is published for the signature"),
])
def test_reply_says_why_the_signature_did_not_count(dns, authenticator, keys, setup, phrase):
    dns.add_txt("_dmarc.corp.test", "v=DMARC1; p=reject" + ("; adkim=s" if setup == "strict"
                                                             else ""))
    domain = {"unaligned": "evil.test", "strict": "mail.corp.test"}.get(setup, "corp.test")
    key = {"wrong-key": keys["rsa1024"], "small-key": keys["rsa512"]}.get(setup, keys["rsa2048"])
    if setup != "no-key":
        dns.add_txt(f"sel._domainkey.{domain}",
                    keys["rsa2048"].record if setup == "wrong-key" else key.record)
    raw = sign(message(), key, domain)
    if setup == "body":
        raw = raw.replace(b"attached", b"in Dropbox")
    text = _reply(_evaluate(authenticator, raw))
    assert text.startswith("550 5.7.26 Message failed DMARC authentication for the From "
                           "domain corp.test: ")
    assert phrase in text and text.endswith("; SPF none")


def test_passing_verdict_has_no_summary(dns, authenticator, keys):
    dns.add_txt("sel._domainkey.corp.test", keys["rsa2048"].record)
    v = _evaluate(authenticator, sign(message(), keys["rsa2048"], "corp.test"))
    assert (v.verdict, v.summary) == ("pass", "")


@pytest.mark.parametrize("verdict", [
    {"header_from_domain": "corp.test; dmarc=pass", "summary": "no DKIM signature"},
    {"header_from_domain": "", "summary": "no DKIM signature"},
    {},
])
def test_reply_never_echoes_unsafe_values(verdict):
    reply = NotAuthentic("x", verdict=verdict).smtp_reply()
    assert str(reply) == "550 5.7.26 Message failed DMARC authentication for the From domain"


def test_unsafe_summary_is_left_out():
    reply = NotAuthentic("x", verdict={"header_from_domain": "corp.test",
                                       "summary": "evil\r\n250 OK <x@y>"}).smtp_reply()
    assert str(reply) == ("550 5.7.26 Message failed DMARC authentication for the From domain "
                          "corp.test")


# -- the pipeline stage ---------------------------------------------------------------------


class _Recording:
    def __init__(self, outcome: AuthVerdict | Exception) -> None:
        self.outcome = outcome
        self.threads: list[int] = []

    def evaluate(self, raw: bytes, **kwargs: Any) -> AuthVerdict:
        self.threads.append(threading.get_ident())
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def _pipeline(authenticator: Any, mode: str = "dmarc") -> Pipeline:
    settings = Settings.model_validate({"auth": {"mode": mode}})
    return Pipeline(settings, None, None, authenticator=authenticator)  # type: ignore[arg-type]


async def test_evaluation_runs_in_a_worker_thread_never_on_the_loop():
    fake = _Recording(AuthVerdict(verdict="pass"))
    loop_thread = threading.get_ident()
    verdict = await _pipeline(fake)._authenticate(message(), MAILBOX, ENVELOPE)
    assert verdict.verdict == "pass"
    assert fake.threads and fake.threads[0] != loop_thread


async def test_real_rsa_verification_does_not_block_the_loop(dns, authenticator, keys):
    """While the Authenticator verifies (DNS timeout included), the loop keeps ticking."""
    dns.add_txt("sel._domainkey.corp.test", keys["rsa2048"].record)
    dns.timeout("_dmarc.corp.test")
    raw = sign(message(), keys["rsa2048"], "corp.test")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        verdict = await _pipeline(authenticator)._authenticate(raw, MAILBOX, ENVELOPE)
    finally:
        task.cancel()
    assert verdict.verdict == "pass"     # exact alignment: the record could not change it
    assert ticks >= 10                   # the 0.5 s DMARC timeout did not stall the loop


async def test_dns_failure_is_451_4_7_0():
    fake = _Recording(DnsTempError("DNS timeout looking up sel._domainkey.corp.test TXT"))
    with pytest.raises(DnsTemporaryFailure) as err:
        await _pipeline(fake)._authenticate(message(), MAILBOX, ENVELOPE)
    assert str(err.value.smtp_reply()) == ("451 4.7.0 Temporary DNS failure while checking "
                                           "the sender")
    assert "sel._domainkey.corp.test" in err.value.detail


async def test_failed_verdict_is_not_authentic_with_the_verdict_attached():
    v = AuthVerdict(verdict="fail", dmarc="fail", header_from_domain="corp.test",
                    reason="DMARC fail for corp.test (p=reject): …", summary="no DKIM signature; SPF none")
    with pytest.raises(NotAuthentic) as err:
        await _pipeline(_Recording(v))._authenticate(message(), MAILBOX, ENVELOPE)
    assert err.value.verdict["verdict"] == "fail"
    assert err.value.reason == v.reason


async def test_dmarc_mode_without_an_authenticator_fails_closed():
    with pytest.raises(TemporaryError) as err:
        await _pipeline(None)._authenticate(message(), MAILBOX, ENVELOPE)
    assert str(err.value.smtp_reply()).startswith("451 4.3.0")


async def test_mode_off_skips():
    fake = _Recording(AuthVerdict(verdict="fail"))
    verdict = await _pipeline(fake, mode="off")._authenticate(message(), MAILBOX, ENVELOPE)
    assert verdict.verdict == "skipped" and fake.threads == []


# -- start-up -------------------------------------------------------------------------------


def test_dmarc_is_the_default_mode():
    assert Settings().auth.mode == "dmarc"


def test_missing_system_resolver_is_a_config_error(monkeypatch):
    def missing(self: Any, f: str) -> None:
        raise dns.resolver.NoResolverConfiguration(f"cannot open {f}")

    monkeypatch.setattr(dns.resolver.Resolver, "read_resolv_conf", missing)
    with pytest.raises(ResolverConfigError):
        Resolver([])
    settings = Settings.model_validate({"smtp": {"hostname": "mx.bccd.test"}})
    with pytest.raises(ConfigError) as err:
        build_authenticator(settings)
    assert str(err.value).startswith("dns.nameservers: ")
    assert "/etc/resolv.conf" in str(err.value)
    # configured nameservers never read the system configuration
    configured = Settings.model_validate({"smtp": {"hostname": "mx.bccd.test"},
                                          "dns": {"nameservers": ["127.0.0.1"]}})
    assert build_authenticator(configured) is not None


def test_default_settings_build_an_authenticator_on_the_system_resolver():
    auth = build_authenticator(Settings.model_validate({"smtp": {"hostname": "mx.bccd.test"}}))
    assert auth is not None
    assert auth.resolver.nameservers                       # type: ignore[attr-defined]
    assert auth.authserv_id == "mx.bccd.test"              # type: ignore[attr-defined]
