"""The pipeline's authenticity stage (``Pipeline._authenticate`` in ``bccd.ingest.pipeline``):
evaluation runs off the event loop, a DNS failure is 451 4.7.0, a failed verdict is
refused with the verdict attached, DMARC mode without an authenticator fails closed, and
mode ``off`` skips."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from bccd.auth.sender import Mailbox
from bccd.auth.verdict import AuthVerdict, DnsTempError
from bccd.config import Settings
from bccd.ingest.outcome import DnsTemporaryFailure, NotAuthentic, TemporaryError
from bccd.ingest.pipeline import Pipeline
from bccd.ingest.types import Envelope
from tests.support.authkit import CLIENT_IP, message, sign

pytestmark = pytest.mark.spec("4.2")

MAILBOX = Mailbox(email="alice@corp.test", name="Alice")
ENVELOPE = Envelope(mail_from="alice@corp.test", client_ip=CLIENT_IP, helo="mail.corp.test")


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
