"""A real sending MTA: a private Postfix, configured with bccd's own ``conf/postfix/``
snippet, relays to bccd over LMTP with XFORWARD (SPEC §3, behind an MTA). While bccd's
database is locked Postfix queues and retries; afterwards every message is stored once."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Iterator

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.mail import make_message
from tests.support.reliability_postfix import PostfixRelay, available
from tests.support.reliability_smtp import SqliteLock, query, stored
from tests.support.server import BccdServer
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not available(), reason="Postfix is not installed"),
              pytest.mark.spec("3")]

N = 20
DOMAIN = "pf.test"


@pytest.fixture
def bccd(make_server, dns: DnsTestServer) -> BccdServer:
    # SPF allows only the *original* client 127.0.0.2, never Postfix (127.0.0.1): a message
    # passes DMARC only when bccd took the client from XFORWARD
    dns.add_txt(DOMAIN, "v=spf1 ip4:127.0.0.2 -all")
    dns.add_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject")
    srv = make_server({
        "smtp": {"lmtp": True, "trusted_relays": ["127.0.0.1/32"]},
        "auth": {"mode": "dmarc"},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 1.0},
        "database": {"busy_timeout": 1},
    })
    srv.setup_user(f"alice@{DOMAIN}", company="pf")
    return srv


@pytest.fixture
def postfix(bccd: BccdServer) -> Iterator[PostfixRelay]:
    relay = PostfixRelay(bccd.bcc_domain, bccd.smtp_port, extra_main={
        # short timers so that the test is quick; the backoff stays above the queue scan
        # interval (a deferred file whose time is already up while its delivery agent still
        # holds it is "skipped, still being delivered" and then waits for a qmgr restart)
        "queue_run_delay": "1s", "minimal_backoff_time": "3s", "maximal_backoff_time": "4s"})
    try:
        relay.start()
        yield relay
    finally:
        relay.stop()


def _events(srv: BccdServer, name: str) -> list[dict]:
    return [e for e in srv.log_events() if e.get("event") == name]


def test_postfix_queues_while_the_database_is_locked_and_delivers_each_message_once(
        bccd: BccdServer, postfix: PostfixRelay, figures) -> None:
    rcpt = bccd.cli("user", "show", f"alice@{DOMAIN}")["bcc_address"]
    db = bccd.dir / "var" / "bccd.sqlite3"
    with SqliteLock(db) as lock:
        with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30,
                          source_address=("127.0.0.2", 0)) as s:
            s.ehlo("original-client.test")
            for i in range(N):
                raw = make_message(frm=f"Alice <alice@{DOMAIN}>", subject=f"via postfix {i}",
                                   message_id=f"<pf-{i}@{DOMAIN}>")
                s.sendmail(f"alice@{DOMAIN}", [rcpt], raw)
        wait_until(lambda: len(_events(bccd, "smtp_exception")) + sum(
            e.get("outcome") == "tempfail" for e in _events(bccd, "copy_outcome")) >= 3,
            timeout=30, interval=0.2, detail=postfix.log)
        time.sleep(2)  # Postfix retries at least once more against the lock
        # read while the lock is still held (WAL: a reader is not blocked by it); once it
        # is released, a copy whose commit was waiting on it may land at once
        while_locked = stored(db)
        held = lock.release()
    tempfails = len(_events(bccd, "smtp_exception")) + sum(
        e.get("outcome") == "tempfail" for e in _events(bccd, "copy_outcome"))
    assert tempfails >= 3, postfix.log()
    assert while_locked == {}
    wait_until(lambda: len(stored(db)) >= N and postfix.queue_empty(), timeout=60, interval=0.5,
               detail=postfix.log)
    counts = stored(db)
    assert counts == {f"pf-{i}@{DOMAIN}": 1 for i in range(N)}, postfix.log()
    assert postfix.queue_empty()
    # bccd saw the original client through XFORWARD, and SPF passed for it
    received = _events(bccd, "data_received")
    assert received and all(e["client"] == "127.0.0.2" and e["relay"] == "127.0.0.1"
                            and e["helo"] == "original-client.test" for e in received), received[:2]
    auths = [json.loads(a) if isinstance(a, str) else a for (a,) in query(db, "SELECT auth FROM messages")]
    assert {a["spf"] for a in auths} == {"pass"} and {a["dmarc"] for a in auths} == {"pass"}
    assert "Traceback" not in bccd.log()
    figures("database locked behind Postfix (LMTP + XFORWARD)", sent=N, accepted_by_postfix=N,
            bccd_4xx_replies=tempfails, lock_held_s=round(held, 1), stored=len(counts),
            duplicates=sum(n - 1 for n in counts.values()), postfix_queue_after="empty")
