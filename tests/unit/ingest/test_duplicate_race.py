"""SPEC §5.1 (stored once) under concurrency on PostgreSQL: the same copy filed by two
transactions at once — two instances, two writer lanes, the Bcc copy and the IMAP sync.

``file_in`` takes no savepoint of its own: the second insert under the (user, dedup key)
constraint waits for the first transaction, and when that commits it is refused. The group
writer then runs the copy again (in the group with a savepoint each, or alone), where it
finds the committed message: a duplicate, with nothing of its own left behind (no second
thread, no second message), and the other copies of its group stored once. Each
interleaving is forced (``tests.support.pglocks``)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bccd.addresses import Addr
from bccd.auth.verdict import SKIPPED
from bccd.ingest import filing
from bccd.ingest.outcome import Disposition
from bccd.ingest.parse import parse
from bccd.ingest.types import Source
from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import Message, Thread
from tests.support.mail import make_message
from tests.support.pglocks import in_thread, wait_for_a_lock_wait
from tests.unit.builders import company_and_user

pytestmark = pytest.mark.spec("5.1")


@dataclasses.dataclass
class World:
    db: Database
    url: str
    user: int

    def request(self, key: str) -> filing.FileRequest:
        raw = make_message(frm="Alice <alice@acme.test>", to="Carol <carol@client.test>",
                           message_id=f"<{key}@acme.test>", subject=key)
        return filing.FileRequest(
            user_id=self.user, raw=raw, parsed=parse(raw, max_header_size=512 * 1024),
            source=Source.BCC, direction="outgoing", sender=Addr("alice@acme.test", "Alice"),
            auth=SKIPPED, bcc_domain="bcc.localhost",
            raw_sha256=hashlib.sha256(raw).hexdigest())

    def counts(self) -> tuple[int, int]:
        with self.db.read() as s:
            return (s.scalar(select(func.count()).select_from(Message)) or 0,
                    s.scalar(select(func.count()).select_from(Thread)) or 0)


@pytest.fixture
def world(pg_url: str) -> Iterator[World]:
    upgrade(pg_url)
    db = Database(pg_url, write_lanes=1)  # one lane: the group is what it takes
    with db.transaction() as s:
        _c, u = company_and_user(s)
        uid = u.id
    yield World(db, pg_url, uid)
    db.dispose()


def _hold(entered: threading.Event, gate: threading.Event) -> Callable[[Session], str]:
    def held(_s: Session) -> str:
        entered.set()
        gate.wait(20)  # the writer waits here: what is queued meanwhile is one group
        return "held"
    return held


def test_a_copy_filed_while_the_same_copy_commits_elsewhere_is_its_duplicate(
        world: World) -> None:
    req = world.request("race")
    with world.db.transaction() as s:  # the other instance: filed, not yet committed
        first = filing.file_in(s, req, [])
        th, filed = in_thread(lambda: world.db.write_sync(filing.file_in, req, []))
        wait_for_a_lock_wait(world.url)  # ours waits on the constraint
        assert not filed
    th.join(30)
    [out] = filed
    assert not isinstance(out, BaseException), out
    assert (out.disposition, out.message_id, out.thread_id) == (
        Disposition.DUPLICATE, first.message_id, first.thread_id)
    assert world.counts() == (1, 1)   # its own thread was undone with its insert


def test_a_racing_copy_in_a_group_leaves_the_others_of_the_group_stored(
        world: World) -> None:
    race, other = world.request("race"), world.request("other")
    entered, gate = threading.Event(), threading.Event()
    held, _ = in_thread(lambda: world.db.write_sync(_hold(entered, gate)))
    assert entered.wait(20)
    with world.db.transaction() as s:
        first = filing.file_in(s, race, [])
        th1, raced = in_thread(lambda: world.db.write_sync(filing.file_in, race, []))
        th2, stored = in_thread(lambda: world.db.write_sync(filing.file_in, other, []))
        writer = world.db._group_writer()
        deadline = time.monotonic() + 20
        while len(writer._pending) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()  # the group: the race, then the other copy
        wait_for_a_lock_wait(world.url)
    for th in (held, th1, th2):
        th.join(30)
    assert not isinstance(raced[0], BaseException), raced
    assert not isinstance(stored[0], BaseException), stored
    assert (raced[0].disposition, raced[0].message_id) == (
        Disposition.DUPLICATE, first.message_id)
    assert stored[0].disposition is Disposition.STORED
    assert world.counts() == (2, 2)
    assert writer.regroups == 1   # the group ran once more, a savepoint each


def test_a_rerun_that_meets_the_same_copy_committing_elsewhere_files_it_as_a_duplicate(
        world: World) -> None:
    """The group runs again because another request raised; the copy's rerun then waits
    on a concurrent copy, which commits: the rerun's own savepoint keeps it a duplicate
    there — no third run alone."""
    race = world.request("race")
    calls: list[int] = []

    def fails_once(_s: Session) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first run")
        return "ok"

    entered, gate = threading.Event(), threading.Event()
    held, _ = in_thread(lambda: world.db.write_sync(_hold(entered, gate)))
    assert entered.wait(20)
    with world.db.transaction() as s:
        first = filing.file_in(s, race, [])
        th1, other = in_thread(lambda: world.db.write_sync(fails_once))
        th2, raced = in_thread(lambda: world.db.write_sync(filing.file_in, race, []))
        writer = world.db._group_writer()
        deadline = time.monotonic() + 20
        while len(writer._pending) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        wait_for_a_lock_wait(world.url)  # the rerun waits on the constraint
    for th in (held, th1, th2):
        th.join(30)
    assert other == ["ok"]
    assert not isinstance(raced[0], BaseException), raced
    assert (raced[0].disposition, raced[0].message_id) == (
        Disposition.DUPLICATE, first.message_id)
    assert (writer.regroups, writer.retries) == (1, 0)
    assert world.counts() == (1, 1)
