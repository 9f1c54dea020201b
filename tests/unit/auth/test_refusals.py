"""Refusals for authenticity and start-up: the one-line 5.7.26 reply that says why, and the
resolver configuration error at start (the pipeline's authenticity stage — 451 4.7.0 for
DNS, off the event loop, fail-closed — is in ``tests/unit/ingest/test_pipeline_auth.py``)."""

from __future__ import annotations

from typing import Any

import dns.resolver
import pytest

from bccd.auth.authenticator import build_authenticator
from bccd.auth.dns import Resolver, ResolverConfigError
from bccd.auth.verdict import AuthVerdict
from bccd.config import ConfigError, Settings
from bccd.ingest.outcome import NotAuthentic
from tests.support.authkit import CLIENT_IP, message, sign

pytestmark = pytest.mark.spec("4.2")


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
