"""Hostile content (SPEC §3, §5.1): header bombs are refused or stored within a fixed time
budget without stalling other connections; odd encodings never cause our own 4xx/5xx."""

from __future__ import annotations

import threading
import time

import pytest

from tests.integration.smtp.conftest import Running
from tests.support.mail import make_message, send
from tests.support.reliability_smtp import query, stored

pytestmark = [pytest.mark.spec("3"), pytest.mark.spec("5.1")]

BUDGET = 30.0          # seconds a bomb may take, end to end (parse budget: 20 s)
MAX_LATENCY = 3.0      # a small message sent meanwhile


def _header_bomb() -> bytes:
    filler = b"".join(f"X-Filler-{i}: {'v' * 200}\r\n".encode() for i in range(10_000))  # ~2.1 MB
    return filler + make_message(message_id="<header-bomb@acme.test>")


def _address_bomb() -> bytes:
    to = ",\r\n ".join(f"p{i:05d}@c{i % 50}.example" for i in range(20_000))
    return (f"From: Alice <alice@acme.test>\r\nTo: {to}\r\nSubject: everyone\r\n"
            "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <address-bomb@acme.test>\r\n"
            "\r\nHello all.\r\n").encode()


@pytest.mark.parametrize(("name", "build", "expect"), [
    ("2 MB header block", _header_bomb, (552, b"5.3.4")),
    ("20,000 addresses in To", _address_bomb, (250, b"2.0.0")),
], ids=["header-2MB", "to-20000"])
def test_bombs_finish_in_budget_without_stalling_others(shared: Running, name: str, build, expect,
                                                       figures) -> None:
    raw = build()
    result: dict[str, object] = {}

    def bomb() -> None:
        t0 = time.monotonic()
        code, text = send(shared.port, shared.rcpt, raw)
        result.update(code=code, text=text, seconds=time.monotonic() - t0)

    t = threading.Thread(target=bomb)
    t.start()
    latencies = []
    n = 0
    while t.is_alive() or n < 3:
        n += 1
        t0 = time.monotonic()
        msg = make_message(message_id=f"<small-{name[:4]}-{n}-{time.monotonic_ns()}@acme.test>")
        assert send(shared.port, shared.rcpt, msg)[0] == 250
        latencies.append(time.monotonic() - t0)
    t.join()
    assert (result["code"], result["text"].split()[0]) == expect, result  # type: ignore[union-attr]
    assert result["seconds"] < BUDGET  # type: ignore[operator]
    assert max(latencies) < MAX_LATENCY, latencies
    figures(f"hostile content: {name}", size_bytes=len(raw), reply=f"{expect[0]} {expect[1].decode()}",
            seconds=round(result["seconds"], 2), concurrent_messages=len(latencies),  # type: ignore[arg-type]
            concurrent_max_latency_s=round(max(latencies), 2))


def test_non_utf8_and_8bit_headers_are_stored(shared: Running) -> None:
    raw = (b"From: Alice <alice@acme.test>\r\nTo: =?iso-8859-1?q?J=FCrgen?= <j@client.test>\r\n"
           b"Subject: Gr\xfc\xdfe aus M\xfcnchen \xe2\x82\xac \xff\xfe\r\n"
           b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <eight-bit@acme.test>\r\n"
           b"X-Weird: \x80\x81\x82 =?utf-8?b?invalid!!?=\r\n"
           b"Content-Type: text/plain; charset=unknown-8bit\r\nContent-Transfer-Encoding: 8bit\r\n"
           b"\r\nK\xe4se und \xc3\xa9t\xc3\xa9\r\n")
    code, text = send(shared.port, shared.rcpt, raw)
    assert code == 250, text
    [(subject, body)] = query(shared.db, "SELECT subject, text_body FROM messages WHERE message_id = ?",
                              "eight-bit@acme.test")
    assert "M" in str(subject) and "nchen" in str(subject)
    assert "se und" in str(body)
    [(blob,)] = query(shared.db, "SELECT r.raw FROM message_raw r JOIN messages m ON m.id = r.message_id "
                                 "WHERE m.message_id = 'eight-bit@acme.test'")
    assert blob == raw


def test_broken_base64_and_quoted_printable_are_stored(shared: Running) -> None:
    raw = (b"From: Alice <alice@acme.test>\r\nTo: bob@client.test\r\nSubject: broken\r\n"
           b"Message-ID: <broken-cte@acme.test>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
           b"--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"SGVsbG8gd29ybGQ!!!===\r\nnot*base64@all\r\n"
           b"--B\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           b"Soft=\r\nbreak =ZZ =E2=82 =\r\n"
           b"--B\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"JVBERi0xLjQK$$$\r\n"
           b"--B--\r\n")
    code, text = send(shared.port, shared.rcpt, raw)
    assert code == 250, text
    assert stored(shared.db)["broken-cte@acme.test"] == 1
