"""Operations: ``bccd doctor`` (SPEC §8), systemd socket activation (an inherited
listening socket as fd 3) and the hardened systemd units."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Certs
from tests.support.dnsserver import DnsTestServer
from tests.support.mail import make_message
from tests.support.reliability_smtp import Raw, dot_stuff, stored
from tests.support.server import REPO, BccdServer, free_port, wait_port
from tests.support.wait import wait_until

CONF = REPO / "conf"


def _doctor(srv: BccdServer) -> tuple[int, dict, str]:
    r = srv.cli_proc("doctor", "--json")
    return r.returncode, json.loads(r.stdout), r.stderr


def _by_check(report: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for c in report["checks"]:
        out.setdefault(c["check"], c)
        if c["status"] != "ok":
            out[c["check"]] = c  # the worst finding of a check wins
    return out


@pytest.fixture
def dovecot() -> Iterator[object]:
    from tests.support.dovecot import Dovecot, available

    if not available():
        pytest.skip("Dovecot is not installed")
    with Dovecot() as server:
        yield server


@pytest.mark.spec("8")
def test_doctor_passes_a_good_installation_and_names_a_broken_mailbox(
        make_server, dns: DnsTestServer, certs: Certs, dovecot) -> None:
    dns.add_mx("bcc.acme-corp.net", 10, "mx.acme-corp.net")
    dns.add_a("mx.acme-corp.net", "127.0.0.1")
    dns.add_txt("bcc.acme-corp.net", "v=spf1 mx -all")
    srv = make_server({
        "smtp": {"bcc_domain": "bcc.acme-corp.net", "tls_cert": str(certs.first[0]),
                 "tls_key": str(certs.first[1])},
        "auth": {"mode": "dmarc"},
        "http": {"public_url": "https://crm.acme-corp.net"},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 1.0},
    }, start=False)
    srv.cli("db", "upgrade")
    srv.setup_user()
    good = dovecot.add_user("alice", "right")  # type: ignore[attr-defined]
    os.environ["RELIABILITY_IMAP_PW"] = "right"
    try:
        srv.cli("imap", "add", "alice@acme.test", "--host", "127.0.0.1", "--port",
                str(dovecot.ssl_port), "--username", good, "--password-env",  # type: ignore[attr-defined]
                "RELIABILITY_IMAP_PW", "--ca-file", dovecot.ca_file)  # type: ignore[attr-defined]
        code, report, err = _doctor(srv)
        assert code == 0 and report["ok"], report
        checks = _by_check(report)
        for name in ("config", "secret-key", "database", "dns-mx", "dns-spf", "tls", "imap:1"):
            assert checks[name]["status"] == "ok", checks
        assert "10 mx.acme-corp.net" in checks["dns-mx"]["message"]
        # a mailbox whose password changed: named, with the fix, exit 1
        other = dovecot.add_user("shared", "changed-since")  # type: ignore[attr-defined]
        os.environ["RELIABILITY_IMAP_PW"] = "the-old-one"
        srv.cli("imap", "add", "alice@acme.test", "--host", "127.0.0.1", "--port",
                str(dovecot.ssl_port), "--username", other, "--password-env",  # type: ignore[attr-defined]
                "RELIABILITY_IMAP_PW", "--ca-file", dovecot.ca_file)  # type: ignore[attr-defined]
    finally:
        os.environ.pop("RELIABILITY_IMAP_PW", None)
    code, report, err = _doctor(srv)
    checks = _by_check(report)
    assert code == 1 and not report["ok"] and "1 problem" in err
    assert checks["imap:2"]["status"] == "fail" and "shared at 127.0.0.1" in checks["imap:2"]["message"]
    assert checks["imap:2"]["fix"] and checks["imap:1"]["status"] == "ok"
    # the human form: one line per finding, the fix under it
    human = srv.cli_proc("doctor")
    assert human.returncode == 1
    assert re.search(r"^FAIL\s+imap:2\s", human.stdout, re.M) and "fix:" in human.stdout


def _expired_cert(d: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bccd.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=100)).not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("bccd.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = d / "expired.pem", d / "expired.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.spec("8")
def test_doctor_says_what_to_fix(make_server, dns: DnsTestServer, tmp_path: Path) -> None:
    cert, key = _expired_cert(tmp_path)
    srv = make_server({
        "smtp": {"bcc_domain": "bcc.no-mx-corp.net", "tls_cert": str(cert), "tls_key": str(key)},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 1.0},
    }, database_url=f"postgresql+psycopg://bccd@127.0.0.1:{free_port()}/bccd", start=False)
    code, report, err = _doctor(srv)
    checks = _by_check(report)
    assert code == 1 and "problem" in err
    assert checks["database"]["status"] == "fail" and "cannot reach" in checks["database"]["message"]
    assert checks["dns-mx"]["status"] == "fail" and "no MX record" in checks["dns-mx"]["message"]
    assert "MX 10 bccd.test" in checks["dns-mx"]["fix"]
    assert checks["dns-spf"]["status"] == "warn" and "v=spf1" in checks["dns-spf"]["fix"]
    assert checks["tls"]["status"] == "fail" and "expired" in checks["tls"]["message"]
    assert checks["config"]["status"] == "warn" and "auth.mode = off" in report["checks"][0]["message"]
    for c in report["checks"]:
        if c["status"] != "ok":
            assert c["fix"], c


def _launch(srv: BccdServer, sock: socket.socket, *opts: str, name: str = "smtp") -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BCCD_", "LISTEN_"))}
    log = open(srv.log_path, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.reliability_sdlaunch", str(sock.fileno()), name, *opts,
             "--", sys.executable, "-m", "bccd", "--config", str(srv.config), "serve"],
            cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, pass_fds=[sock.fileno()], stdout=log,
            stderr=subprocess.STDOUT)
    finally:
        log.close()


def _bcc_copy(port: int, bcc: str, message_id: str) -> None:
    with Raw(port) as conn:
        assert conn.greeting[1].startswith("220 bccd.test")
        assert conn.cmd("EHLO client.test")[0] == 250
        assert conn.cmd("MAIL FROM:<alice@acme.test>")[0] == 250
        assert conn.cmd(f"RCPT TO:<{bcc}>")[0] == 250
        assert conn.cmd("DATA")[0] == 354
        conn.send(dot_stuff(make_message(message_id=message_id)))
        assert conn.reply()[0] == 250


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def _activated(make_server, overrides: dict | None = None) -> tuple[BccdServer, dict, int, subprocess.Popen[bytes]]:
    """A server with one user, started on an SMTP socket it inherits (socket activation)."""
    srv = make_server(overrides, start=False)
    srv.cli("db", "upgrade")
    alice = srv.setup_user()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    proc = _launch(srv, sock)
    sock.close()  # only bccd holds it now
    return srv, alice, port, proc


def test_socket_activation_serves_on_the_inherited_socket(make_server) -> None:
    srv, alice, port, proc = _activated(make_server)
    try:
        wait_port(srv.http_port, 30, proc)
        _bcc_copy(port, alice["bcc_address"], "<activated@acme.test>")
        with pytest.raises(OSError):  # smtp.listen was not bound
            socket.create_connection(("127.0.0.1", srv.smtp_port), 1).close()
    finally:
        assert _stop(proc) == 0
    listening = [e for e in srv.log_events() if e.get("event") == "smtp_listening"]
    assert listening[-1]["inherited"] is True and listening[-1]["address"] == f"127.0.0.1:{port}"
    assert stored(srv.dir / "var" / "bccd.sqlite3") == {"activated@acme.test": 1}


def test_socket_activation_of_the_http_listener(make_server) -> None:
    import urllib.request

    srv = make_server(start=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    proc = _launch(srv, sock, name="http")
    sock.close()
    try:
        wait_port(srv.smtp_port, 30, proc)  # SMTP binds smtp.listen itself
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status == 200
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.http_port), 1).close()
    finally:
        assert _stop(proc) == 0


def test_socket_activation_for_another_process_is_ignored(make_server) -> None:
    srv = make_server(start=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    proc = _launch(srv, sock, "--wrong-pid")
    sock.close()
    try:
        wait_port(srv.smtp_port, 30, proc)  # bound smtp.listen itself
        with Raw(srv.smtp_port) as conn:
            assert conn.greeting[0] == 220
    finally:
        assert _stop(proc) == 0


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def test_systemd_units_are_valid_and_hardened(tmp_path: Path) -> None:
    unit = (CONF / "bccd.service").read_text()
    directives = dict(line.split("=", 1) for line in unit.splitlines()
                      if "=" in line and not line.startswith("#") and not line.startswith("SystemCallFilter"))
    assert directives["NoNewPrivileges"] == "yes"
    assert directives["ProtectSystem"] == "strict"      # read-only system
    assert directives["PrivateTmp"] == "yes"
    assert directives["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert directives["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert directives["User"] != "root" and directives["ReadWritePaths"] == "/var/lib/bccd"
    assert directives["ExecReload"] == "/bin/kill -HUP $MAINPID"
    socket_unit = (CONF / "bccd.socket").read_text()
    assert "FileDescriptorName=smtp" in socket_unit and "Service=bccd.service" in socket_unit
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed")
    # offline checks: ExecStart must exist, so point it at this checkout's bccd
    (tmp_path / "bccd.service").write_text(unit.replace("/opt/bccd/venv/bin/bccd",
                                                        str(Path(sys.executable).parent / "bccd")))
    shutil.copy(CONF / "bccd.socket", tmp_path / "bccd.socket")
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", "bccd.service", "bccd.socket"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    r = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "bccd.service"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for bccd.service: ([0-9.]+)", r.stdout)
    assert m is not None, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


def test_socket_activation_with_smtp_workers_shares_the_inherited_socket(make_server) -> None:
    srv, alice, port, proc = _activated(make_server, {"smtp": {"workers": 2}})
    try:
        wait_port(srv.http_port, 30, proc)
        wait_until(lambda: any(e.get("event") == "smtp_worker_ready" for e in srv.log_events()),
                   timeout=30, detail=srv.log)
        for i in range(12):
            _bcc_copy(port, alice["bcc_address"], f"<shared{i}@acme.test>")
        with pytest.raises(OSError):  # neither process bound smtp.listen
            socket.create_connection(("127.0.0.1", srv.smtp_port), 1).close()
    finally:
        assert _stop(proc) == 0
    events = srv.log_events()
    worker = [e for e in events if e.get("event") == "smtp_listening" and e.get("worker") == 1]
    assert worker and worker[0]["inherited"] is True and worker[0]["address"] == f"127.0.0.1:{port}"
    assert stored(srv.dir / "var" / "bccd.sqlite3") == {f"shared{i}@acme.test": 1 for i in range(12)}
