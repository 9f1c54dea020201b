"""STARTTLS (SPEC §3): a trustme certificate, a TLS 1.2 floor, certificate reload on
SIGHUP, and the STARTTLS command-injection case."""

from __future__ import annotations

import shutil
import signal
import smtplib
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Certs
from tests.support.mail import make_message
from tests.support.reliability_smtp import Raw, stored
from tests.support.server import BccdServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("3")


def _client_ctx(certs: Certs, **kw: object) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca_file))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[BccdServer]:
    d = tmp_path_factory.mktemp("tls")
    srv = BccdServer(d, {"smtp": {"tls_cert": str(certs.first[0]), "tls_key": str(certs.first[1])}})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _peer_cert(port: int, certs: Certs) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
        s.ehlo("client.test")
        s.starttls(context=_client_ctx(certs))
        der = s.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        assert der is not None
        return der


def _der(path: Path) -> bytes:
    pem = path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    return ssl.PEM_cert_to_DER_cert(pem)


def test_starttls_delivers_over_tls_1_2_and_1_3(tls_server: BccdServer, certs: Certs) -> None:
    alice = tls_server.setup_user()
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with smtplib.SMTP("127.0.0.1", tls_server.smtp_port, timeout=15) as s:
            s.ehlo("client.test")
            assert s.has_extn("starttls")
            s.starttls(context=_client_ctx(certs, minimum_version=version, maximum_version=version))
            assert s.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",  # type: ignore[union-attr]
                                        ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            s.ehlo("client.test")
            assert not s.has_extn("starttls")
            raw = make_message(message_id=f"<tls-{version.name}@acme.test>")
            s.sendmail("alice@acme.test", [alice["bcc_address"]], raw)
    ids = stored(tls_server.dir / "var" / "bccd.sqlite3")
    assert ids["tls-TLSv1_2@acme.test"] == 1 and ids["tls-TLSv1_3@acme.test"] == 1


def test_a_tls_1_1_client_is_refused(tls_server: BccdServer, certs: Certs) -> None:
    with warnings.catch_warnings():  # an old client on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = _client_ctx(certs, minimum_version=ssl.TLSVersion.TLSv1_1,
                          maximum_version=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with Raw(tls_server.smtp_port) as conn:
        assert conn.cmd("EHLO old.test")[0] == 250
        assert conn.cmd("STARTTLS")[0] == 220
        with pytest.raises(ssl.SSLError) as info:
            ctx.wrap_socket(conn.sock, server_hostname="bccd.test")
    # the client did offer TLS 1.1 (it got as far as the server hanging up on it) ...
    assert not isinstance(info.value, ssl.SSLError) or "NO_PROTOCOLS_AVAILABLE" not in str(info.value)
    # ... and the server refused it for its version
    wait_until(lambda: any("UNSUPPORTED_PROTOCOL" in str(e.get("reason"))
                           for e in tls_server.log_events() if e.get("event") == "tls_handshake_failed"),
               timeout=5, interval=0.05, detail=lambda: tls_server.log()[-3000:])
    # and the listener is still fine
    assert _peer_cert(tls_server.smtp_port, certs) == _der(certs.first[0])


def test_commands_pipelined_after_starttls_are_discarded(tls_server: BccdServer, certs: Certs) -> None:
    with Raw(tls_server.smtp_port) as conn:
        assert conn.cmd("EHLO client.test")[0] == 250
        # the injected NOOP/MAIL travel in the same packet as STARTTLS, in clear text
        conn.send(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<mallory@evil.test>\r\n")
        assert conn.reply()[0] == 220
        tls = _client_ctx(certs).wrap_socket(conn.sock, server_hostname="bccd.test")
        f = tls.makefile("rb")
        tls.sendall(b"EHLO client.test\r\n")
        first = f.readline().decode()
        # the first reply inside TLS answers EHLO: nothing injected was executed
        assert first.startswith("250-"), first
        while not f.readline().startswith(b"250 "):
            pass
        tls.sendall(b"RCPT TO:<x@bcc.localhost>\r\n")
        assert f.readline().startswith(b"503"), "a MAIL from before TLS leaked into the session"
        f.close()
        tls.close()


def test_sighup_reloads_the_certificate_for_new_connections(make_server, certs: Certs, tmp_path: Path,
                                                           figures) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(certs.first[0], cert)
    shutil.copy(certs.first[1], key)
    srv = make_server({"smtp": {"tls_cert": str(cert), "tls_key": str(key)}})
    assert _peer_cert(srv.smtp_port, certs) == _der(certs.first[0])
    # a session opened before the reload keeps working afterwards
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=15) as before:
        before.ehlo("client.test")
        before.starttls(context=_client_ctx(certs))
        shutil.copy(certs.second[0], cert)
        shutil.copy(certs.second[1], key)
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any(e.get("event") == "tls_reloaded" for e in srv.log_events()),
                   timeout=10, interval=0.05, detail=srv.log)
        assert before.noop()[0] == 250
    assert _peer_cert(srv.smtp_port, certs) == _der(certs.second[0])
    # a broken certificate is refused: the one in use stays
    cert.write_text("not a certificate")
    srv.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: any(e.get("event") == "tls_reload_failed" for e in srv.log_events()),
               timeout=10, interval=0.05, detail=srv.log)
    assert _peer_cert(srv.smtp_port, certs) == _der(certs.second[0])
    assert srv.proc.poll() is None
    figures("certificate reload on SIGHUP", reloaded=True, broken_cert_kept_old=True)


def test_no_starttls_without_a_certificate(shared) -> None:
    with smtplib.SMTP("127.0.0.1", shared.port, timeout=15) as s:
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        code, msg = s.docmd("STARTTLS")
        assert code in (454, 500, 502), (code, msg)


def test_sighup_reaches_every_smtp_worker(make_server, certs: Certs, tmp_path: Path) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(certs.first[0], cert)
    shutil.copy(certs.first[1], key)
    srv = make_server({"smtp": {"tls_cert": str(cert), "tls_key": str(key), "workers": 2}})
    wait_until(lambda: any(e.get("event") == "smtp_worker_ready" for e in srv.log_events()),
               timeout=20, interval=0.05, detail=srv.log)
    shutil.copy(certs.second[0], cert)
    shutil.copy(certs.second[1], key)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: {e.get("worker", 0) for e in srv.log_events()
                        if e.get("event") == "tls_reloaded"} == {0, 1},
               timeout=10, interval=0.05, detail=srv.log)
    # whichever process takes the connection, it presents the new certificate
    for _ in range(8):
        assert _peer_cert(srv.smtp_port, certs) == _der(certs.second[0])
