"""Outbound mail through a real SMTP relay (the capture server): plain, STARTTLS with
AUTH, implicit TLS, and how relay answers map to retry / give up."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from bccd.config import OutboundSettings
from bccd.notify.outbound import OutboundMail, OutboundPermanent, OutboundTemporary, send
from tests.support.capture_smtp import CaptureSmtp
from tests.support.server import free_port

pytestmark = pytest.mark.spec("10")

MAIL = OutboundMail(sender="bccd@bcc.localhost", recipients=("alt@home.test",),
                    message="From: bccd@bcc.localhost\r\nTo: alt@home.test\r\nSubject: hi\r\n\r\nbody\r\n")


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    authority = trustme.CA()
    pem = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))  # the system trust store, as in production
    return authority


def _server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


async def test_plain_delivery_to_a_local_relay() -> None:
    with CaptureSmtp() as cap:
        await send(OutboundSettings(port=cap.port), MAIL, local_hostname="bccd.test")
        [got] = cap.wait_for(1)
    assert (got.mail_from, got.rcpt_tos, got.tls) == ("bccd@bcc.localhost", ["alt@home.test"], False)
    assert b"Subject: hi" in got.data


async def test_starttls_with_auth(ca: trustme.CA) -> None:
    with CaptureSmtp(tls_context=_server_ctx(ca), require_starttls=True,
                     auth=("bccd", "s3cret")) as cap:
        settings = OutboundSettings(port=cap.port, security="starttls", username="bccd",
                                    password="s3cret")
        await send(settings, MAIL, local_hostname="bccd.test")
        [got] = cap.wait_for(1)
        assert got.tls and got.login == "bccd"
        with pytest.raises(OutboundTemporary, match="refused our login"):
            await send(settings.model_copy(update={"password": "wrong"}), MAIL,
                       local_hostname="bccd.test")


async def test_implicit_tls(ca: trustme.CA) -> None:
    with CaptureSmtp(ssl_context=_server_ctx(ca)) as cap:
        await send(OutboundSettings(port=cap.port, security="ssl"), MAIL, local_hostname="bccd.test")
        assert cap.wait_for(1)[0].tls


async def test_an_untrusted_certificate_is_a_temporary_failure(tmp_path: Path) -> None:
    with CaptureSmtp(ssl_context=_server_ctx(trustme.CA())) as cap:
        with pytest.raises(OutboundTemporary):
            await send(OutboundSettings(port=cap.port, security="ssl", timeout=5), MAIL,
                       local_hostname="bccd.test")
        assert cap.messages == []


async def test_a_relay_that_is_down_is_temporary_and_a_refusal_is_permanent() -> None:
    with pytest.raises(OutboundTemporary, match="unavailable"):
        await send(OutboundSettings(port=free_port(), timeout=5), MAIL, local_hostname="bccd.test")
    with CaptureSmtp(refuse_rcpt="550 5.1.1 no such user") as cap:
        with pytest.raises(OutboundPermanent, match=r"5\.1\.1"):
            await send(OutboundSettings(port=cap.port), MAIL, local_hostname="bccd.test")
    with CaptureSmtp(refuse_rcpt="451 4.3.0 try later") as cap:
        with pytest.raises(OutboundTemporary):
            await send(OutboundSettings(port=cap.port), MAIL, local_hostname="bccd.test")
