"""SPEC §11: several ``bccd serve`` instances on one PostgreSQL database need no
coordination of their own — every decision that must be unique is the database's.

Two real instances share one database; the same messages, replies of one conversation and
one confirmation link reach both at the same moment:

- a message delivered to both (a client retrying on another MX) is stored once, each
  delivery answered 250;
- the parent and the replies of conversations, spread across both instances and sent
  at once, end as one thread per conversation;
- a confirmation token posted to both instances at once confirms the address once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.integration.alternates.helpers import confirm_link, token_of
from tests.support.capture_smtp import CaptureSmtp
from tests.support.mail import make_message, send
from tests.support.server import BccdServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("11")

ALICE = "alice@acme.test"


@pytest.fixture
def capture() -> Any:
    with CaptureSmtp() as cap:
        yield cap


@pytest.fixture
def pair(make_server: Callable[..., BccdServer], pg_url: str,
         capture: CaptureSmtp) -> tuple[BccdServer, BccdServer, dict[str, Any]]:
    overrides = {"outbound": {"port": capture.port}}
    a = make_server(overrides, database_url=pg_url, start=False)
    a.cli("db", "upgrade", json_out=False)
    alice = a.setup_user(ALICE)
    a.start()
    b = make_server(overrides, database_url=pg_url)
    return a, b, alice


def _rows(pg_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


def _at_once(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run every job at the same moment (a barrier), each in its own thread."""
    barrier = threading.Barrier(len(jobs))

    def go(job: Callable[[], Any]) -> Any:
        barrier.wait(30)
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(go, jobs))


def _outcomes(*servers: BccdServer) -> Counter[str]:
    return Counter(e["outcome"] for srv in servers for e in srv.log_events()
                   if e.get("event") == "copy_outcome")


def test_a_message_delivered_to_both_instances_at_once_is_stored_once(pair, pg_url) -> None:
    a, b, alice = pair
    n = 25
    raws = [make_message(frm=f"Alice <{ALICE}>", to=f"Bob <bob{i}@client.test>",
                         subject=f"Offer {i}", message_id=f"<dup-{i}@acme.test>")
            for i in range(n)]
    jobs = [lambda raw=raw, srv=srv: send(srv.smtp_port, alice["bcc_address"], raw, mail_from=ALICE)
            for raw in raws for srv in (a, b)]
    replies = _at_once(jobs)
    assert [code for code, _ in replies] == [250] * (2 * n)
    [(messages, distinct, sources)] = _rows(pg_url, """
        SELECT count(*), count(DISTINCT m.message_id),
               (SELECT count(*) FROM message_sources s JOIN messages m2 ON m2.id = s.message_id)
        FROM messages m""")
    assert (messages, distinct, sources) == (n, n, n)
    assert _rows(pg_url, "SELECT count(*) FROM persons")[0][0] == n  # one Bob each, not two
    wait_until(lambda: sum(_outcomes(a, b).values()) == 2 * n)
    assert _outcomes(a, b) == {"stored": n, "duplicate": n}


def test_replies_spread_across_both_instances_make_one_thread_per_conversation(pair, pg_url) -> None:
    a, b, alice = pair
    conversations, replies = 6, 5
    jobs = []
    for c in range(conversations):
        parent = f"<conv-{c}@acme.test>"
        msgs = [make_message(frm=f"Alice <{ALICE}>", to="Carol <carol@client.test>",
                             subject=f"Project {c}", message_id=parent)]
        msgs += [make_message(frm=f"Alice <{ALICE}>", to="Carol <carol@client.test>",
                              subject=f"Re: Project {c}", message_id=f"<conv-{c}-re-{r}@acme.test>",
                              in_reply_to=parent, references=parent)
                 for r in range(replies)]
        for i, raw in enumerate(msgs):
            srv = (a, b)[(c + i) % 2]
            jobs.append(lambda raw=raw, srv=srv: send(srv.smtp_port, alice["bcc_address"], raw,
                                                      mail_from=ALICE))
    results = _at_once(jobs)
    assert [code for code, _ in results] == [250] * len(jobs)
    per_thread = _rows(pg_url, """
        SELECT t.id, count(m.id), min(m.subject) FROM threads t
        JOIN messages m ON m.thread_id = t.id GROUP BY t.id ORDER BY min(m.subject)""")
    assert [(count, subject) for _, count, subject in per_thread] == [
        (replies + 1, f"Project {c}") for c in range(conversations)]
    assert _rows(pg_url, "SELECT count(*) FROM threads")[0][0] == conversations
    # every id of a conversation points at its one thread; Carol is one person, linked
    orphans = _rows(pg_url, """
        SELECT count(*) FROM thread_refs r LEFT JOIN threads t ON t.id = r.thread_id
        WHERE t.id IS NULL""")[0][0]
    assert orphans == 0
    assert _rows(pg_url, "SELECT count(*) FROM persons")[0][0] == 1
    assert _rows(pg_url, "SELECT count(DISTINCT thread_id) FROM links WHERE kind = 'person'"
                 )[0][0] == conversations


def test_a_confirmation_token_used_on_both_instances_at_once_confirms_once(
        pair, pg_url, capture: CaptureSmtp) -> None:
    a, b, _alice = pair
    alt = "alice.private@home.test"
    a.cli("alt", "add", ALICE, alt)
    link = confirm_link(capture.wait_for(1)[0])
    token = token_of(link)
    path = link.split("/confirm/", 1)[1]

    def post(srv: BccdServer) -> int:
        with httpx.Client(timeout=30) as http:
            return http.post(f"{srv.http_url}/confirm/{path}", data={"token": token}).status_code

    # the same form posted to both instances at the same instant: one confirms, the
    # other finds the token used
    assert sorted(_at_once([lambda: post(a), lambda: post(b)])) == [200, 410]
    assert _rows(pg_url, "SELECT status FROM alternates WHERE email = :e", e=alt) == [("confirmed",)]
    confirmed = [e for srv in (a, b) for e in srv.log_events()
                 if e.get("event") == "alternate_confirmed"]
    assert len(confirmed) == 1
