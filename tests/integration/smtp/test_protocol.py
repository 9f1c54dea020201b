"""Protocol abuse over real sockets (SPEC §3): smuggling never splits a message, early
talkers, over-long lines, floods, slowloris, connection caps, hostile HELO names, the
null sender and the recipient limit."""

from __future__ import annotations

import threading
import time

import pytest

from tests.integration.smtp.conftest import Running
from tests.support.mail import make_message, send
from tests.support.reliability_smtp import Raw, dot_stuff, query, stored

pytestmark = pytest.mark.spec("3")

SMUGGLED = (b"MAIL FROM:<mallory@evil.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
            b"From: CEO <ceo@acme.test>\r\nSubject: smuggled\r\nMessage-ID: <smuggled-{n}@evil.test>\r\n"
            b"\r\nwire the money\r\n")

VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-crlf": b"\r.\r\n",
}


def _transaction(conn: Raw, mail_from: str, rcpt: str) -> None:
    assert conn.cmd("EHLO client.test")[0] == 250
    assert conn.cmd(f"MAIL FROM:<{mail_from}>")[0] == 250
    assert conn.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert conn.cmd("DATA")[0] == 354


@pytest.mark.parametrize("name", list(VARIANTS))
def test_smtp_smuggling_never_splits_a_message(shared: Running, name: str, figures) -> None:
    n = f"{name}-{time.monotonic_ns()}"
    head = make_message(subject=f"carrier {name}", message_id=f"<carrier-{n}@acme.test>", body="hello\n")
    payload = head.rstrip(b"\r\n") + VARIANTS[name] + SMUGGLED.replace(b"{rcpt}", shared.rcpt.encode()) \
        .replace(b"{n}", n.encode())
    with Raw(shared.port) as conn:
        _transaction(conn, "alice@acme.test", shared.rcpt)
        conn.send(payload + b"\r\n.\r\n" + b"QUIT\r\n")
        code, text = conn.reply()
        # exactly one reply for the whole DATA: the smuggled MAIL/RCPT/DATA were never commands
        assert (code, text.split()[1]) == (554, "5.6.0"), text
        assert conn.reply()[0] == 221
    ids = stored(shared.db)
    assert f"smuggled-{n}@evil.test" not in ids and f"carrier-{n}@acme.test" not in ids
    figures("smtp smuggling", variant=name, sent=1, acknowledged=0, stored=0, split=0)


def test_nul_in_data_is_refused_and_the_session_goes_on(shared: Running) -> None:
    raw = make_message(message_id="<nul@acme.test>", body="before\x00after\n")
    with Raw(shared.port) as conn:
        _transaction(conn, "alice@acme.test", shared.rcpt)
        code, text = conn.cmd(dot_stuff(raw).rstrip(b"\r\n"))
        assert (code, text.split()[1]) == (554, "5.6.0")
        assert "NUL" in text
        # the same connection goes on
        assert conn.cmd("MAIL FROM:<alice@acme.test>")[0] == 250


def test_bare_lf_elsewhere_is_stored_byte_for_byte(shared: Running) -> None:
    raw = make_message(message_id="<bare-lf@acme.test>", body="x\n").replace(b"x\r\n", b"one\ntwo\rthree\r\n")
    assert send(shared.port, shared.rcpt, raw)[0] == 250
    [(blob,)] = query(shared.db, "SELECT r.raw FROM message_raw r JOIN messages m ON m.id = r.message_id "
                                  "WHERE m.message_id = 'bare-lf@acme.test'")
    assert blob == raw


def test_dot_stuffed_dot_line_is_legitimate(shared: Running) -> None:
    raw = make_message(message_id="<dotline@acme.test>", body="x\n").replace(b"x\r\n", b"above\r\n.\r\nbelow\r\n")
    assert send(shared.port, shared.rcpt, raw)[0] == 250
    assert stored(shared.db)["dotline@acme.test"] == 1


def test_early_talker_is_refused_554_5_5_0(strict: Running) -> None:
    with Raw(strict.port, greet=False) as conn:
        conn.send(b"EHLO eager.test\r\nMAIL FROM:<a@b.test>\r\n")
        code, text = conn.reply()
        assert (code, text.split()[1]) == (554, "5.5.0")
        assert conn.closed()
    # a client that waits for the greeting is served after the greeting pause
    t0 = time.monotonic()
    with Raw(strict.port) as polite:
        assert polite.greeting[0] == 220 and time.monotonic() - t0 >= 0.9
        assert polite.cmd("EHLO polite.test")[0] == 250


def test_over_long_command_and_line_are_500_5_5_2_and_the_session_survives(strict: Running) -> None:
    with Raw(strict.port) as conn:
        assert conn.cmd("EHLO " + "a" * 2000) == (500, "500 5.5.2 Line too long")
        # longer than smtp.max_line_length (64 KiB here): read to its end, then refused
        assert conn.cmd(b"NOOP " + b"b" * 200_000) == (500, "500 5.5.2 Line too long")
        assert conn.cmd("NOOP")[0] == 250


def test_command_flood_hits_command_call_limit_421_4_7_0(strict: Running) -> None:
    with Raw(strict.port) as conn:
        conn.send(b"NOOP\r\n" * 11)
        codes = [conn.reply() for _ in range(11)]
        assert [c for c, _ in codes[:10]] == [250] * 10
        assert codes[10][0] == 421 and codes[10][1].split()[1] == "4.7.0"
        assert conn.closed()


def test_unknown_command_flood_is_421_4_7_0(strict: Running) -> None:
    with Raw(strict.port) as conn:
        conn.send(b"BOGUS\r\n" * 5)
        replies = [conn.reply() for _ in range(5)]
        assert [c for c, _ in replies[:4]] == [500] * 4
        assert replies[4][0] == 421 and replies[4][1].split()[1] == "4.7.0"
        assert conn.closed()


def test_slowloris_data_below_the_floor_is_cut_and_others_are_served(strict: Running, figures) -> None:
    slow = []
    for _ in range(2):
        c = Raw(strict.port, source="127.0.0.4")  # each strict test has its own address
        _transaction(c, "alice@acme.test", strict.rcpt)
        slow.append(c)
    t0 = time.monotonic()
    cut: list[tuple[int, str]] = []

    def dribble(c: Raw) -> None:
        try:
            for _ in range(40):
                c.send(b"x" * 10)  # 20 B/s, far below the 1000 B/s floor
                time.sleep(0.5)
        except OSError:
            pass

    threads = [threading.Thread(target=dribble, args=(c,)) for c in slow]
    for t in threads:
        t.start()
    # meanwhile a normal client is served at once
    t1 = time.monotonic()
    assert send(strict.port, strict.rcpt, make_message(message_id="<while-slow@acme.test>"))[0] == 250
    latency = time.monotonic() - t1
    for c in slow:
        cut.append(c.reply())
    elapsed = time.monotonic() - t0
    for c in slow:
        c.close()
    for t in threads:
        t.join()
    assert all(code == 421 and text.split()[1] == "4.4.2" for code, text in cut), cut
    assert elapsed < 6, elapsed          # timeout 3 s minus what little the dribble earned
    assert latency < 3, latency
    figures("slowloris (20 B/s in DATA)", slow_clients=2, cut_after_s=round(elapsed, 1),
            concurrent_message_latency_s=round(latency, 2))


def test_idle_client_gets_421_4_4_2(strict: Running) -> None:
    with Raw(strict.port, source="127.0.0.6") as conn:
        assert conn.cmd("EHLO idle.test")[0] == 250
        code, text = conn.reply()   # nothing sent: the 3 s timeout
        assert (code, text.split()[1]) == (421, "4.4.2")


def test_session_deadline_ends_a_busy_connection(strict: Running) -> None:
    t0 = time.monotonic()
    with Raw(strict.port, source="127.0.0.5") as conn:
        assert conn.cmd("EHLO busy.test")[0] == 250
        last = (0, "")
        for _ in range(9):  # never idle, under the call limit, but past the 7 s deadline
            try:
                last = conn.cmd("NOOP" if _ % 2 else "RSET")
            except ConnectionError:
                break
            if last[0] == 421:
                break
            time.sleep(1)
        assert last[0] == 421 and last[1].split()[1] == "4.4.2", last
        assert 6 < time.monotonic() - t0 < 11


def test_connection_cap_per_ip_is_421_4_7_0(strict: Running) -> None:
    ip = "127.0.0.3"
    held = [Raw(strict.port, greet=False, source=ip) for _ in range(3)]  # at once: idle timeout 3 s
    try:
        assert [c.reply()[0] for c in held] == [220] * 3
        with Raw(strict.port, greet=False, source=ip) as over:
            code, text = over.reply()
            assert (code, text.split()[1]) == (421, "4.7.0")
            assert over.closed()
        # another address is not affected
        with Raw(strict.port, source="127.0.0.7") as other:
            assert other.greeting[0] == 220
        held.pop().close()
        time.sleep(0.2)
        with Raw(strict.port, source=ip) as again:
            assert again.greeting[0] == 220
    finally:
        for c in held:
            c.close()


@pytest.mark.parametrize("helo", [b"evil.test\rX-Injected: yes", b"evil\x00.test", b"two words",
                                  b"\xff\xfe.test"])
def test_hostile_helo_is_501_5_5_4(shared: Running, helo: bytes) -> None:
    with Raw(shared.port) as conn:
        for verb in (b"HELO ", b"EHLO "):
            code, text = conn.cmd(verb + helo)
            assert (code, text.split()[1]) == (501, "5.5.4"), text
        assert conn.cmd("MAIL FROM:<alice@acme.test>")[0] == 503  # still not greeted


def test_null_sender_is_accepted(shared: Running) -> None:
    with Raw(shared.port) as conn:
        _transaction(conn, "", shared.rcpt)
        code, _ = conn.cmd(dot_stuff(make_message(message_id="<null-sender@acme.test>")).rstrip(b"\r\n"))
        assert code == 250
    assert stored(shared.db)["null-sender@acme.test"] == 1


def test_101_pipelined_recipients_get_452_4_5_3_after_100(shared: Running) -> None:
    raw = make_message(message_id="<many-rcpts@acme.test>")
    with Raw(shared.port) as conn:
        assert conn.cmd("EHLO client.test")[0] == 250
        conn.send(b"MAIL FROM:<alice@acme.test>\r\n" + f"RCPT TO:<{shared.rcpt}>\r\n".encode() * 101
                  + b"DATA\r\n")
        assert conn.reply()[0] == 250
        rcpts = [conn.reply() for _ in range(101)]
        assert [c for c, _ in rcpts[:100]] == [250] * 100
        assert rcpts[100][0] == 452 and rcpts[100][1].split()[1] == "4.5.3"
        assert conn.reply()[0] == 354
        assert conn.cmd(dot_stuff(raw).rstrip(b"\r\n"))[0] == 250
    assert stored(shared.db)["many-rcpts@acme.test"] == 1
