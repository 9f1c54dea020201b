"""A NUL character never reaches a stored text: PostgreSQL's text columns refuse it. It
comes as U+FFFD (like an undecodable byte) from quoted-printable ``=00``, base64, an
encoded word or a synced message's raw bytes; the raw message keeps its bytes."""

from __future__ import annotations

from bccd.ingest.parse import parse

_RAW = (b"From: =?utf-8?q?Al=00ice?= <alice@acme.test>\r\n"
        b"To: Bob <bob@client.test>\r\n"
        b"Subject: =?utf-8?b?UXVvdGUAZA==?=\r\n"
        b"Message-ID: <nul@acme.test>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nA=00B\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nPHA+QQBCPC9wPg==\r\n"
        b"--b\r\nContent-Type: application/x\x00y\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\nAAE=\r\n"
        b"--b--\r\n")


def test_nul_in_bodies_subject_and_names_becomes_the_replacement_character() -> None:
    p = parse(_RAW, max_header_size=64 * 1024)
    assert p.text.rstrip() == "A\ufffdB"
    assert p.html == "<p>A\ufffdB</p>"
    assert p.subject == "Quote\ufffdd"
    assert "\x00" not in "".join(p.from_values)
    assert p.to[0].email == "bob@client.test"
    assert [(a.content_type, a.data) for a in p.attachments] == [("application/x\ufffdy", b"\x00\x01")]
    raw = parse(_RAW.replace(b"Subject: =?utf-8?b?UXVvdGUAZA==?=", b"Subject: raw \x00 too"),
                max_header_size=64 * 1024)
    assert raw.subject == "raw \ufffd too"


def test_a_nul_next_to_raw_8bit_bytes_in_a_header_is_replaced_too() -> None:
    """Found by the fuzz test: the NUL replaced before the 8-bit bytes were decoded made
    the decoding fail (a 451)."""
    p = parse(b"From: Alice <alice@fuzz.test>\r\nTo: \x00\xc2\x80\r\nSubject: a\x00\xc3\xa9\r\n"
              b"Content-Type: text/plain\r\n\r\nhi\r\n", max_header_size=64 * 1024)
    assert p.subject == "a\ufffd\u00e9"
    assert p.to == []
