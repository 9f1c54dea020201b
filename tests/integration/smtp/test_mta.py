"""Deployment behind an MTA (SPEC §3): LMTP with one reply per recipient, XFORWARD and
Authentication-Results believed from ``smtp.trusted_relays`` only, and hostile HELO
names that never reach a stored header."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.mail import make_message
from tests.support.reliability_smtp import Raw, dot_stuff, query, stored
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("3")


def _events(srv: BccdServer, name: str) -> list[dict]:
    return [e for e in srv.log_events() if e.get("event") == name]


def _auth(srv: BccdServer, message_id: str) -> dict:
    [(value,)] = query(srv.dir / "var" / "bccd.sqlite3", "SELECT auth FROM messages WHERE message_id = ?",
                       message_id)
    return json.loads(value) if isinstance(value, str) else dict(value)  # type: ignore[arg-type]


def test_lmtp_answers_each_recipient(make_server) -> None:
    srv = make_server({"smtp": {"lmtp": True, "max_message_size": "1MiB"}})
    alice = srv.setup_user()
    bob = srv.setup_user("bob@acme.test", name="Bob")
    with Raw(srv.smtp_port) as conn:
        assert conn.cmd("EHLO client.test")[1].startswith("500 5.5.1")
        assert conn.cmd("HELO client.test")[1].startswith("500 5.5.1")
        conn.send(b"LHLO relay.test\r\n")
        lines = conn.lines()
        assert lines[-1].startswith("250 ") and any("ENHANCEDSTATUSCODES" in x for x in lines)
        assert conn.cmd("MAIL FROM:<alice@acme.test>")[0] == 250
        assert conn.cmd(f"RCPT TO:<{alice['bcc_address']}>")[0] == 250
        assert conn.cmd("RCPT TO:<acme+nosuchtoken00000@bcc.localhost>")[0] == 550  # not counted
        assert conn.cmd(f"RCPT TO:<{bob['bcc_address']}>")[0] == 250
        assert conn.cmd("DATA")[0] == 354
        conn.send(dot_stuff(make_message(message_id="<lmtp-1@acme.test>")))
        first, second = conn.reply(), conn.reply()
        assert first[1].startswith("250 2.0.0")              # alice's copy is stored
        assert second[1].startswith("550 5.7.1")             # bob's is not his mail
        assert conn.cmd("NOOP")[0] == 250                    # no third reply was pending
        # a refusal of the whole DATA is still one reply per recipient
        assert conn.cmd("MAIL FROM:<alice@acme.test>")[0] == 250
        assert conn.cmd(f"RCPT TO:<{alice['bcc_address']}>")[0] == 250
        assert conn.cmd(f"RCPT TO:<{bob['bcc_address']}>")[0] == 250
        assert conn.cmd("DATA")[0] == 354
        conn.send(dot_stuff(make_message(message_id="<lmtp-big@acme.test>", body="z" * 1_500_000)))
        assert [conn.reply()[1][:9] for _ in range(2)] == ["552 5.3.4"] * 2
        assert conn.cmd("NOOP")[0] == 250
    assert stored(srv.dir / "var" / "bccd.sqlite3") == {"lmtp-1@acme.test": 1}


@pytest.fixture(scope="module")
def relay_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BccdServer]:
    srv = BccdServer(tmp_path_factory.mktemp("relay"), {
        "smtp": {"trusted_relays": ["127.0.0.1/32"]},
        "auth": {"trusted_authserv_ids": ["mx.relay.test"]},
    })
    srv.start()
    srv.setup_user()
    yield srv
    srv.stop()


def _deliver(conn: Raw, rcpt: str, raw: bytes) -> tuple[int, str]:
    assert conn.cmd("MAIL FROM:<alice@acme.test>")[0] == 250
    assert conn.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert conn.cmd("DATA")[0] == 354
    conn.send(dot_stuff(raw))
    return conn.reply()


def test_xforward_names_the_client_from_trusted_relays_only(relay_server: BccdServer) -> None:
    rcpt = relay_server.cli("user", "show", "alice@acme.test")["bcc_address"]
    with Raw(relay_server.smtp_port) as conn:  # 127.0.0.1: a trusted relay
        conn.send(b"EHLO relay.test\r\n")
        assert "250-XFORWARD NAME ADDR PROTO HELO" in conn.lines()
        assert conn.cmd("XFORWARD NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::7 PROTO=ESMTP")[0] == 250
        assert conn.cmd("XFORWARD HELO=orig.example")[0] == 250
        assert conn.cmd("XFORWARD HELO=evil+0D+0AX-Injected:+20yes")[1].startswith("501 5.5.4")
        assert conn.cmd("XFORWARD COLOUR=blue")[1].startswith("501 5.5.4")
        assert _deliver(conn, rcpt, make_message(message_id="<xf-1@acme.test>"))[0] == 250
        # values last one transaction
        assert _deliver(conn, rcpt, make_message(message_id="<xf-2@acme.test>"))[0] == 250
        assert conn.cmd("MAIL FROM:<alice@acme.test>")[0] == 250
        assert conn.cmd("XFORWARD ADDR=192.0.2.1")[1].startswith("503 5.5.1")
    with Raw(relay_server.smtp_port, source="127.0.0.2") as conn:  # anyone else
        conn.send(b"EHLO stranger.test\r\n")
        assert not any("XFORWARD" in x for x in conn.lines())
        assert conn.cmd("XFORWARD ADDR=192.0.2.9 HELO=forged.example")[1].startswith("550 5.7.0")
        assert _deliver(conn, rcpt, make_message(message_id="<xf-3@acme.test>"))[0] == 250
    seen = {e["client"]: e for e in _events(relay_server, "data_received")}
    assert seen["2001:db8::7"]["helo"] == "orig.example" and seen["2001:db8::7"]["relay"] == "127.0.0.1"
    assert seen["127.0.0.1"]["helo"] == "relay.test"     # xf-2: XFORWARD forgotten
    assert seen["127.0.0.2"]["helo"] == "stranger.test"  # xf-3: never believed
    assert "192.0.2.9" not in seen


def test_authentication_results_are_trusted_from_trusted_relays_only(relay_server: BccdServer) -> None:
    rcpt = relay_server.cli("user", "show", "alice@acme.test")["bcc_address"]

    def message(n: str) -> bytes:
        return (b"Authentication-Results: mx.relay.test; dkim=pass header.d=acme.test\r\n"
                b"Authentication-Results: bccd.test; dmarc=pass header.from=acme.test\r\n"
                b"Authentication-Results: other.test; spf=pass smtp.mailfrom=acme.test\r\n"
                + make_message(message_id=f"<{n}@acme.test>"))

    with Raw(relay_server.smtp_port) as conn:
        assert conn.cmd("EHLO relay.test")[0] == 250
        assert _deliver(conn, rcpt, message("ar-trusted"))[0] == 250
    with Raw(relay_server.smtp_port, source="127.0.0.2") as conn:
        assert conn.cmd("EHLO stranger.test")[0] == 250
        assert _deliver(conn, rcpt, message("ar-stranger"))[0] == 250
    trusted = _auth(relay_server, "ar-trusted@acme.test")["extra"].get("trusted_results")
    assert trusted is not None and len(trusted) == 1
    assert trusted[0].startswith("mx.relay.test") and "dkim=pass" in trusted[0]
    assert "trusted_results" not in _auth(relay_server, "ar-stranger@acme.test")["extra"]


def test_helo_with_cr_or_lf_never_reaches_a_stored_header(make_server, dns: DnsTestServer) -> None:
    dns.add_txt("helo.test", "v=spf1 ip4:127.0.0.1 -all")
    dns.add_txt("_dmarc.helo.test", "v=DMARC1; p=reject")
    srv = make_server({"auth": {"mode": "dmarc"},
                       "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 1.0}})
    alice = srv.setup_user("alice@helo.test", company="helo")
    raw = make_message(frm="Alice <alice@helo.test>", message_id="<helo-1@helo.test>")
    with Raw(srv.smtp_port) as conn:
        assert conn.cmd(b"EHLO evil.test\rX-Injected: yes")[1].startswith("501 5.5.4")
        # a bare LF ends the command line: "X-Injected: yes" is just an unknown command
        conn.send(b"EHLO evil.test\nX-Injected: yes\r\n")
        assert conn.lines()[-1].startswith("250 ")
        assert conn.reply()[1].startswith("500 5.5.2")
        assert conn.cmd("MAIL FROM:<alice@helo.test>")[0] == 250
        assert conn.cmd(f"RCPT TO:<{alice['bcc_address']}>")[0] == 250
        assert conn.cmd("DATA")[0] == 354
        conn.send(dot_stuff(raw))
        assert conn.reply()[0] == 250
    auth = _auth(srv, "helo-1@helo.test")
    [(stored_raw,)] = query(srv.dir / "var" / "bccd.sqlite3", "SELECT raw FROM message_raw")
    assert auth["verdict"] == "pass"
    assert "X-Injected" not in json.dumps(auth) and b"X-Injected" not in stored_raw  # type: ignore[operator]
    assert "\r" not in auth["results_header"] and "\n" not in auth["results_header"].replace("\r\n\t", "")
