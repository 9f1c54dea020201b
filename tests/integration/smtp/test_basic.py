"""SPEC §3/§4.1 over real SMTP against ``bccd serve`` (several Bcc recipients in one DATA are
decided separately; the recipient limit is in test_protocol.py)."""

from __future__ import annotations

import smtplib

import pytest

from tests.support.mail import dialog, make_message, send
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("3")


@pytest.fixture
def alice(server: BccdServer) -> dict:
    return server.setup_user()


def _count_messages(srv: BccdServer, email: str) -> int:
    return sum(t["messages"] for t in srv.cli("mail", "list", email))


@pytest.mark.spec("4.1")
def test_copy_from_login_address_is_stored_and_listed(server: BccdServer, alice: dict) -> None:
    server.cli("person", "create", "--company", "acme", "--name", "Bob", "--email", "bob@client.test")
    code, text = send(server.smtp_port, alice["bcc_address"], make_message(subject="Quote"))
    assert code == 250 and text.startswith(b"2.0.0")
    threads = server.cli("mail", "list", "alice@acme.test")
    assert [t["subject"] for t in threads] == ["Quote"]
    assert {"kind": "person", "id": 1, "how": "auto"} in threads[0]["links"]
    shown = server.cli("mail", "show", str(threads[0]["thread_id"]))
    msg = shown["messages"][0]
    assert msg["direction"] == "outgoing"
    assert msg["from"] == "alice@acme.test"
    assert msg["to"] == ["bob@client.test"]
    assert msg["sources"] == ["bcc"]
    assert "let's talk" in msg["text"]


def test_rcpt_for_another_domain_is_550_5_7_1(server: BccdServer, alice: dict) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        s.ehlo("client.test")
        s.mail("alice@acme.test")
        code, msg = s.rcpt("someone@gmail.com")
    assert (code, msg.split()[0]) == (550, b"5.7.1")


def test_unknown_bcc_address_is_550_5_1_1(server: BccdServer, alice: dict) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        s.ehlo("client.test")
        s.mail("alice@acme.test")
        code, msg = s.rcpt("acme+aaaaaaaaaaaaaaaa@bcc.localhost")
        assert (code, msg.split()[0]) == (550, b"5.1.1")
        code, msg = s.rcpt("nobody@bcc.localhost")
        assert (code, msg.split()[0]) == (550, b"5.1.1")


def test_ehlo_advertises_pipelining_and_enhanced_codes(server: BccdServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        s.ehlo("client.test")
        for ext in ("pipelining", "enhancedstatuscodes", "8bitmime", "smtputf8", "size"):
            assert s.has_extn(ext), ext
        assert s.esmtp_features["size"] == str(25 * 1024 * 1024)


def test_every_reply_carries_an_enhanced_status_code(server: BccdServer, alice: dict) -> None:
    replies = dialog(server.smtp_port, [
        b"EHLO client.test\r\n", b"BOGUS\r\n", b"RCPT TO:<x@bcc.localhost>\r\n",
        b"MAIL FROM:<a@b.c>\r\n", b"MAIL FROM:<a@b.c>\r\n", b"DATA\r\n", b"NOOP\r\n",
        b"RSET\r\n", b"VRFY x\r\n", b"QUIT\r\n",
    ])
    final = [r for r in replies[1:] if r[3:4] == " " and r != "250 HELP"]
    assert len(final) == 9, replies
    for r in final:
        code, enhanced = r.split()[:2]
        assert enhanced[0] == code[0] and enhanced.count(".") == 2, r


@pytest.mark.spec("4.1")
def test_sender_not_users_address_is_550_5_7_1_and_recorded(server: BccdServer, alice: dict) -> None:
    raw = make_message(frm="Mallory <mallory@evil.test>")
    code, text = send(server.smtp_port, alice["bcc_address"], raw)
    assert code == 550 and text.startswith(b"5.7.1")
    assert b"mallory@evil.test" in text
    assert server.cli("mail", "list", "alice@acme.test") == []
    rej = server.cli("rejections", "list", "alice@acme.test")
    assert rej[0]["code"] == "550 5.7.1" and "mallory@evil.test" in rej[0]["reason"]


def test_same_message_delivered_twice_is_stored_once(server: BccdServer, alice: dict) -> None:
    raw = make_message(message_id="<dup-1@acme.test>")
    assert send(server.smtp_port, alice["bcc_address"], raw)[0] == 250
    assert send(server.smtp_port, alice["bcc_address"], raw)[0] == 250
    threads = server.cli("mail", "list", "alice@acme.test")
    assert len(threads) == 1 and threads[0]["messages"] == 1


def test_one_data_for_two_users_files_a_copy_for_each(server: BccdServer) -> None:
    alice = server.setup_user()
    bob = server.setup_user("bob@acme.test", name="Bob")
    raw = make_message(frm="alice@acme.test", to="carol@client.test, bob@acme.test")
    # bob's copy is refused (From is not his address); alice's is stored → 250
    code, _ = send(server.smtp_port, [alice["bcc_address"], bob["bcc_address"]], raw)
    assert code == 250
    assert _count_messages(server, "alice@acme.test") == 1
    assert _count_messages(server, "bob@acme.test") == 0
    assert server.cli("rejections", "list", "bob@acme.test")[0]["code"] == "550 5.7.1"


def test_the_same_address_twice_in_one_data_is_one_copy(server: BccdServer) -> None:
    alice = server.setup_user()
    code, _ = send(server.smtp_port, [alice["bcc_address"]] * 3, make_message())
    assert code == 250
    assert _count_messages(server, "alice@acme.test") == 1


@pytest.mark.spec("5.3")
def test_a_nul_in_a_decoded_text_is_stored_on_both_engines(make_server, db_url: str) -> None:
    """Quoted-printable ``=00`` and an encoded word holding NUL: PostgreSQL's text columns
    refuse U+0000, so it is stored as U+FFFD — a ``250``, never a ``451`` every retry."""
    srv = make_server(database_url=db_url, start=False)
    srv.cli("db", "upgrade")
    srv.start()
    alice = srv.setup_user()
    raw = (b"From: Alice <alice@acme.test>\r\nTo: Bob <bob@client.test>\r\n"
           b"Subject: =?utf-8?b?UXVvdGUAZA==?=\r\nMessage-ID: <nul@acme.test>\r\n"
           b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\nA=00B\r\n")
    assert send(srv.smtp_port, alice["bcc_address"], raw)[0] == 250
    [thread] = srv.cli("mail", "list", "alice@acme.test")
    assert thread["subject"] == "Quote\ufffdd"


@pytest.mark.spec("5.3")
def test_storage_on_both_engines_files_and_dedups(make_server, db_url: str) -> None:
    srv = make_server(database_url=db_url, start=False)
    srv.cli("db", "upgrade")
    srv.start()
    alice = srv.setup_user()
    srv.cli("person", "create", "--company", "acme", "--name", "Bob", "--email", "BOB@client.test")
    first = make_message(message_id="<p1@acme.test>", subject="Proposal")
    reply = make_message(message_id="<p2@acme.test>", subject="Re: Proposal", in_reply_to="<p1@acme.test>",
                         references="<p1@acme.test>", to="bob@CLIENT.test")
    for raw in (first, reply, first):
        assert send(srv.smtp_port, alice["bcc_address"], raw)[0] == 250
    [thread] = srv.cli("mail", "list", "alice@acme.test")
    assert thread["messages"] == 2
    assert {"kind": "person", "id": 1, "how": "auto"} in thread["links"]
