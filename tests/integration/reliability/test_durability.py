"""Nothing lost, nothing twice (SPEC §3): kill -9 under concurrent load from an external
load generator, a locked database (451 4.3.0, the session goes on), SIGTERM draining."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import reliability_load as load
from tests.support.mail import make_message
from tests.support.reliability_smtp import Raw, SqliteLock, dot_stuff, raw_digests_at, stored, stored_at
from tests.support.server import REPO, BccdServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("3")


def _run_load(port: int, rcpt: str, out: Path, tag: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.reliability_load", "--port", str(port), "--rcpt", rcpt,
         "--out", str(out), "--tag", tag, *extra], cwd=REPO)


def _records(out: Path) -> list[dict]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_kill_9_under_concurrent_load_loses_nothing_and_stores_nothing_twice(
        make_server, db_url: str, tmp_path: Path, figures) -> None:
    srv: BccdServer = make_server(database_url=db_url, start=False)
    srv.cli("db", "upgrade")
    srv.start()
    alice = srv.setup_user()
    out = tmp_path / "load.jsonl"
    gen = _run_load(srv.smtp_port, alice["bcc_address"], out, "k9", "--first", "0", "--count", "100000",
                    "--concurrency", "8", "--until-down")
    try:
        wait_until(lambda: sum(r["status"] == "ack" for r in _records(out)) >= 80, 90, interval=0.05,
                   what="80 acknowledged")
        srv.kill9()  # in the middle of 8 concurrent transactions
        gen.wait(60)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    first = _records(out)
    acked = {r["i"] for r in first if r["status"] == "ack"}
    unknown = {r["i"] for r in first if r["status"] != "ack"}
    assert unknown, "the kill did not hit a transaction in flight"
    srv.start()
    counts = stored_at(db_url)
    mid = "k9-{}@acme.test".format
    lost = sorted(i for i in acked if counts.get(mid(i), 0) == 0)
    twice = {m: n for m, n in counts.items() if n > 1}
    stored_unacked = sum(1 for i in unknown if mid(i) in counts)
    assert not lost and not twice, (lost, twice)
    digests = raw_digests_at(db_url)
    assert all(digests[mid(i)] == hashlib.sha256(load.message("k9", i)).hexdigest() for i in acked)
    # the client retries every message it got no 250 for: each ends up stored exactly once
    retry = _run_load(srv.smtp_port, alice["bcc_address"], out, "k9", "--ids",
                      ",".join(str(i) for i in sorted(unknown)), "--concurrency", "4")
    assert retry.wait(120) == 0
    second = _records(out)[len(first):]
    assert {r["i"] for r in second if r["status"] == "ack"} == unknown
    counts = stored_at(db_url)
    assert {m: n for m, n in counts.items() if m.startswith("k9-")} == \
        {mid(i): 1 for i in acked | unknown}
    figures("kill -9 under load (8 concurrent sessions)", engine=db_url.split(":")[0].split("+")[0],
            sent=len(acked | unknown), acknowledged=len(acked), stored=len(acked) + stored_unacked,
            lost=len(lost), duplicates=len(twice), in_flight_at_kill=len(unknown),
            stored_without_250=stored_unacked, after_client_retry_stored=len(counts), after_retry_duplicates=0)


def test_locked_database_is_451_4_3_0_and_the_session_stays_usable(make_server, figures) -> None:
    srv = make_server({"database": {"busy_timeout": 1}})
    alice = srv.setup_user()
    db = srv.dir / "var" / "bccd.sqlite3"
    rcpt = f"RCPT TO:<{alice['bcc_address']}>"
    raw = make_message(message_id="<locked@acme.test>")
    with Raw(srv.smtp_port) as conn:
        assert conn.cmd("EHLO client.test")[0] == 250
        assert conn.cmd("MAIL FROM:<alice@acme.test>")[0] == 250
        with SqliteLock(db):  # RCPT only reads: in WAL mode readers go on past a writer's lock
            assert conn.cmd(rcpt)[0] == 250
        assert conn.cmd("DATA")[0] == 354
        with SqliteLock(db):  # while the message is filed
            t0 = time.monotonic()
            code, text = conn.cmd(dot_stuff(raw).rstrip(b"\r\n"))
            waited = time.monotonic() - t0
            assert (code, text.split()[1]) == (451, "4.3.0"), text
            assert "lock" not in text.lower() and "sqlite" not in text.lower()  # no internals
            assert stored(db) == {}
        # the lock is gone: the same session delivers the retry
        assert conn.cmd("MAIL FROM:<alice@acme.test>")[0] == 250
        assert conn.cmd(rcpt)[0] == 250
        assert conn.cmd("DATA")[0] == 354
        assert conn.cmd(dot_stuff(raw).rstrip(b"\r\n"))[0] == 250
    assert stored(db) == {"locked@acme.test": 1}
    assert waited < 10
    assert "Traceback" not in srv.log()
    figures("database locked (external BEGIN EXCLUSIVE past busy_timeout = 1 s)", sent=2,
            acknowledged=1, tempfailed=1, stored=1, duplicates=0, reply="451 4.3.0 at DATA (RCPT only reads and goes on)",
            seconds_to_451=round(waited, 1))


def test_sigterm_drains_in_flight_transactions_and_refuses_new_connections(make_server, figures) -> None:
    srv = make_server({"smtp": {"timeout": 20}})
    alice = srv.setup_user()
    db = srv.dir / "var" / "bccd.sqlite3"
    payload = dot_stuff(make_message(message_id="<drained@acme.test>", body="x" * 50_000 + "\n"))
    busy = Raw(srv.smtp_port)
    idle = Raw(srv.smtp_port)
    try:
        assert busy.cmd("EHLO busy.test")[0] == 250
        assert busy.cmd("MAIL FROM:<alice@acme.test>")[0] == 250
        assert busy.cmd(f"RCPT TO:<{alice['bcc_address']}>")[0] == 250
        assert busy.cmd("DATA")[0] == 354
        busy.send(payload[:20_000])
        assert idle.cmd("EHLO idle.test")[0] == 250
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: any(e.get("event") == "smtp_draining" for e in srv.log_events()), 10,
                   interval=0.05, what="draining")
        with Raw(srv.smtp_port, greet=False) as late:
            code, text = late.reply()
            assert (code, text.split()[1]) == (421, "4.3.2")
        code, text = idle.cmd("MAIL FROM:<alice@acme.test>")  # no new transaction
        assert (code, text.split()[1]) == (421, "4.3.2")
        time.sleep(0.5)
        busy.send(payload[20_000:])  # the transaction in flight finishes
        code, text = busy.reply()
        assert code == 250, text
        assert srv.proc.wait(30) == 0
    finally:
        busy.close()
        idle.close()
    srv.proc = None
    assert stored(db) == {"drained@acme.test": 1}
    assert "Traceback" not in srv.log()
    figures("SIGTERM during a transaction", sent=1, acknowledged=1, stored=1, duplicates=0,
            new_connection_reply="421 4.3.2", exit_code=0)
