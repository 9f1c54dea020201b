"""SPEC §3 under injected faults: 250 only after a durable commit (kill -9 right after it,
a client hanging up during the commit); retries are stored once; a full disk is
452 4.3.1, and a temporary failure of one Bcc recipient of a DATA is the 4xx for all."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from tests.support.mail import make_message, send
from tests.support.server import BccdServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("3")


def _count_messages(srv: BccdServer, email: str) -> int:
    return sum(t["messages"] for t in srv.cli("mail", "list", email))


def _outcomes(srv: BccdServer) -> list[str]:
    return [e["outcome"] for e in srv.log_events() if e.get("event") == "copy_outcome"]


def test_kill_9_right_after_250_loses_nothing(make_server, db_url: str) -> None:
    srv = make_server(database_url=db_url, start=False)
    srv.cli("db", "upgrade")
    srv.start()
    alice = srv.setup_user()
    acked = []
    for i in range(5):
        raw = make_message(subject=f"m{i}", message_id=f"<k9-{i}@acme.test>")
        code, _ = send(srv.smtp_port, alice["bcc_address"], raw)
        assert code == 250
        acked.append(f"m{i}")
    srv.kill9()
    srv.start()
    subjects = sorted(t["subject"] for t in srv.cli("mail", "list", "alice@acme.test"))
    assert subjects == acked


def test_client_disconnect_during_commit_stores_exactly_once(server: BccdServer) -> None:
    alice = server.setup_user()
    # a large message, so that parsing and the durable commit take a noticeable time
    raw = make_message(message_id="<hangup@acme.test>",
                       attachments=[("big.bin", "application/octet-stream", b"x" * 15_000_000)])
    s = socket.create_connection(("127.0.0.1", server.smtp_port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO client.test\r\nMAIL FROM:<alice@acme.test>\r\n"
              + f"RCPT TO:<{alice['bcc_address']}>\r\nDATA\r\n".encode())
    while not f.readline().startswith(b"354"):
        pass
    s.sendall(raw + b".\r\n")
    wait_until(lambda: any(e.get("event") == "data_received" for e in server.log_events()),
               timeout=30, interval=0.01)
    # hang up hard (RST) while the server is filing the message
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    wait_until(lambda: _count_messages(server, "alice@acme.test") != 0, timeout=30, interval=0.2)
    assert _count_messages(server, "alice@acme.test") == 1
    wait_until(lambda: _outcomes(server), timeout=30, interval=0.05)
    assert _outcomes(server) == ["stored"]  # logged once, though the client was gone
    # the client never saw 250, so it retries: still one message
    assert send(server.smtp_port, alice["bcc_address"], raw)[0] == 250
    assert _count_messages(server, "alice@acme.test") == 1
    assert "Traceback" not in server.log()


@pytest.fixture
def tiny_blob_fs(tmp_path: Path):
    mnt = tmp_path / "blobs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test: {r.stderr.decode()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(fs: Path) -> Path:
    """Fill a filesystem to the last block."""
    filler = fs / "filler"
    # unbuffered: a buffered file's close would try the rest again and raise ENOSPC,
    # depending on how the free space happens to align with the chunks
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                if os.write(fd, chunk) == 0:
                    break
            except OSError:  # ENOSPC: full to the last block
                break
    finally:
        os.close(fd)
    return filler


def _confirm_alternate(srv: BccdServer, user_email: str, alt: str, var: Path) -> None:
    """Test setup shortcut: a confirmed alternate row (the confirmation flow has its own tests)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(f"sqlite:///{var / 'bccd.sqlite3'}")
    with eng.begin() as conn:
        uid = conn.execute(text("SELECT id FROM users WHERE email = :e"), {"e": user_email}).scalar_one()
        conn.execute(text("INSERT INTO alternates (user_id, email, status, created_at) "
                          "VALUES (:u, :a, 'confirmed', CURRENT_TIMESTAMP)"), {"u": uid, "a": alt})
    eng.dispose()


def test_temporary_failure_for_one_recipient_is_4xx_for_all_and_the_retry_is_safe(
    make_server, tiny_blob_fs: Path
) -> None:
    # the whole data directory (database included) lives on a small filesystem
    srv = make_server({"storage": {"data_dir": str(tiny_blob_fs / "var")}})
    alice = srv.setup_user()
    bob = srv.setup_user("bob@acme.test", name="Bob")
    _confirm_alternate(srv, "bob@acme.test", "alice@acme.test", tiny_blob_fs / "var")  # a shared mailbox
    raw = make_message(message_id="<mixed@acme.test>", body="quote\n" + "q" * 300_000)
    assert send(srv.smtp_port, alice["bcc_address"], raw)[0] == 250
    # the disk fills up: alice's copy is a duplicate (nothing to write), bob's new copy
    # cannot be written → temporary failure → 452 for the whole transaction
    filler = _fill(tiny_blob_fs)
    code, text = send(srv.smtp_port, [alice["bcc_address"], bob["bcc_address"]], raw)
    assert (code, text.split()[0]) == (452, b"4.3.1")
    filler.unlink()
    assert _count_messages(srv, "bob@acme.test") == 0
    # the client retries the whole transaction: alice still has one copy, bob now has his
    code, _ = send(srv.smtp_port, [alice["bcc_address"], bob["bcc_address"]], raw)
    assert code == 250
    assert _count_messages(srv, "alice@acme.test") == 1
    assert _count_messages(srv, "bob@acme.test") == 1


def test_storage_full_is_452_4_3_1_and_nothing_is_lost(make_server, tiny_blob_fs: Path) -> None:
    srv = make_server({"storage": {"blob_dir": str(tiny_blob_fs)}})
    alice = srv.setup_user()
    filler = _fill(tiny_blob_fs)
    raw = make_message(message_id="<full@acme.test>",
                       attachments=[("a.bin", "application/octet-stream", b"a" * 600_000)])
    code, text = send(srv.smtp_port, alice["bcc_address"], raw)
    assert (code, text.split()[0]) == (452, b"4.3.1")
    assert _count_messages(srv, "alice@acme.test") == 0
    filler.unlink()
    assert send(srv.smtp_port, alice["bcc_address"], raw)[0] == 250
    assert _count_messages(srv, "alice@acme.test") == 1
