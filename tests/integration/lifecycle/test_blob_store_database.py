"""``storage.blobs = "database"`` at function level, on SQLite and PostgreSQL: attachment
bytes go in with their message, once per content, in 1 MiB chunks; a reader hands them
out a chunk at a time and carries on when the blob moves to the other store; the
collector deletes what no attachment names — and on PostgreSQL every interleaving of a
filing transaction with the collector's two statements is played deterministically, then
filings and two collectors race for real."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from bccd.addresses import Addr
from bccd.auth.verdict import SKIPPED
from bccd.ingest import filing
from bccd.ingest.outcome import Disposition, Outcome
from bccd.ingest.parse import parse
from bccd.ingest.types import Source
from bccd.lifecycle import blobmove, dbgc
from bccd.store import dbblobs
from bccd.store.blobs import Blobs, BlobStore
from bccd.store.db import Database
from bccd.store.models import Attachment, Message
from bccd.store.models_storage import Blob, BlobChunk
from tests.support.mail import make_message
from tests.support.pglocks import wait_for_a_lock_wait
from tests.unit.builders import company_and_user

MiB = 1 << 20


class World:
    def __init__(self, db: Database, root: Path) -> None:
        self.db, self.blobs = db, Blobs("database", BlobStore(root))
        with db.transaction() as s:
            _, u = company_and_user(s)
            self.user = u.id

    def file(self, *attachments: bytes, message_id: str | None = None) -> Outcome:
        raw = make_message(message_id=message_id or f"<{uuid.uuid4().hex}@acme.test>",
                           attachments=[(f"f{i}.bin", "application/octet-stream", a)
                                        for i, a in enumerate(attachments)])
        req = filing.FileRequest(
            user_id=self.user, raw=raw, parsed=parse(raw, max_header_size=512 * 1024),
            source=Source.BCC, direction="outgoing", sender=Addr("alice@acme.test", "Alice"),
            auth=SKIPPED, bcc_domain="bcc.localhost", raw_sha256=hashlib.sha256(raw).hexdigest())
        return filing.file_copy(self.db, self.blobs, req)

    def scalar(self, stmt: Any) -> Any:
        with self.db.read() as s:
            return s.scalar(stmt)


@pytest.fixture
def world(function_db: Database, tmp_path: Path) -> Iterator[World]:
    yield World(function_db, tmp_path / "blobs")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob(db: Database, digest: str) -> bytes | None:
    with db.read() as s:
        return dbblobs.read(s, digest)


def _unreferenced(db: Database, data: bytes) -> str:
    """A blob no attachment names (a message of it was deleted)."""
    with db.transaction() as s:
        dbblobs.store(s, [(_sha(data), data)])
    return _sha(data)


def _reference(s: Any, digest: str, size: int = 1) -> None:
    mid = s.scalar(select(Message.id).limit(1))
    s.add(Attachment(message_id=mid, filename="f", size=size, sha256=digest))
    s.flush()


def test_an_attachment_goes_in_with_its_message_once_per_content_in_1_mib_chunks(
        world: World) -> None:
    data = os.urandom(5 * MiB // 2)
    first = world.file(data, message_id="<one@acme.test>")
    second = world.file(data)
    again = world.file(data, message_id="<one@acme.test>")  # a duplicate writes nothing
    assert [o.disposition for o in (first, second, again)] == [
        Disposition.STORED, Disposition.STORED, Disposition.DUPLICATE]
    digest = _sha(data)
    assert world.scalar(select(func.count()).select_from(Blob)) == 1
    assert world.scalar(select(Blob.size).where(Blob.sha256 == digest)) == len(data)
    with world.db.read() as s:
        sizes = list(s.scalars(select(func.length(BlobChunk.data)).order_by(BlobChunk.n)))
    assert sizes == [MiB, MiB, MiB // 2]
    assert world.scalar(select(func.count()).select_from(Attachment)
                        .where(Attachment.sha256 == digest)) == 2
    assert not any(world.blobs.files.root.rglob("*")), "nothing was written to files"
    reader = world.blobs.open(world.db, digest)
    parts = []
    while chunk := reader.read_chunk():
        parts.append(chunk)
    assert [len(p) for p in parts] == sizes and b"".join(parts) == data


def test_the_collector_deletes_unreferenced_blobs_with_their_chunks_and_keeps_the_rest(
        world: World) -> None:
    kept, gone = os.urandom(MiB + 10), os.urandom(3000)
    world.file(kept)
    doomed = world.file(gone, kept)
    with world.db.transaction() as s:
        s.execute(delete(Message).where(Message.id == doomed.message_id))
    named = dbgc.collect(world.db, candidates=[_sha(gone), _sha(kept)])
    assert (named.deleted, named.freed_bytes, named.referenced) == (1, len(gone), 1)
    assert _blob(world.db, _sha(gone)) is None and _blob(world.db, _sha(kept)) == kept
    assert world.scalar(select(func.count()).select_from(BlobChunk)
                        .where(BlobChunk.sha256 == _sha(gone))) == 0
    assert dbgc.collect(world.db).deleted == 0


def test_a_reader_carries_on_from_the_other_store_when_its_blob_moves_mid_download(
        world: World) -> None:
    data = os.urandom(3 * MiB)
    world.file(data)
    reader = world.blobs.open(world.db, _sha(data))
    head = reader.read_chunk()
    moved = blobmove.to_files(world.db, world.blobs)   # a migration, meanwhile
    assert moved.copied == 1 and moved.left == {"fs": 1, "database": 0}
    rest = []
    while chunk := reader.read_chunk():
        rest.append(chunk)
    assert head + b"".join(rest) == data
    reader.close()


# ------------------------------------------------------------------ PostgreSQL interleavings
# PostgreSQL only: SQLite serialises every write transaction, so there is nothing to
# interleave there
postgresql_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def _waiting_on_a_lock(db: Database, timeout: float = 15.0) -> None:
    wait_for_a_lock_wait(db.url, timeout)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    return t, out


@postgresql_only
def test_a_blob_a_filing_holds_is_passed_over_without_waiting_and_then_kept(world: World) -> None:
    db = world.db
    world.file()  # a message to hang attachments on
    data = b"an attachment whose only message was deleted"
    digest = _unreferenced(db, data)
    locked, commit = threading.Event(), threading.Event()

    def filing_in_flight() -> None:
        with db.transaction() as s:
            dbblobs.store(s, [(digest, data)])     # FOR KEY SHARE on the existing row
            locked.set()
            commit.wait(15)
            _reference(s, digest, len(data))

    t, _ = _in_thread(filing_in_flight)
    assert locked.wait(15)
    started = time.monotonic()
    passed = dbgc.collect(db)
    assert passed.deleted == 0 and time.monotonic() - started < 5  # SKIP LOCKED: no wait
    commit.set()
    t.join(15)
    assert dbgc.collect(db).deleted == 0 and _blob(db, digest) == data


@postgresql_only
def test_a_filing_that_waits_for_the_collector_writes_the_blob_again(world: World) -> None:
    db = world.db
    world.file()  # a message to hang attachments on
    data = os.urandom(MiB + 7)
    digest = _unreferenced(db, data)
    filing_thread: list[threading.Thread] = []

    def file_it() -> None:
        with db.transaction() as s:
            dbblobs.store(s, [(digest, data)])
            _reference(s, digest, len(data))

    def meanwhile(step: str, locked: list[str]) -> None:
        assert locked == [digest]
        t, _ = _in_thread(file_it)               # blocks on the collector's FOR UPDATE
        filing_thread.append(t)
        _waiting_on_a_lock(db)

    report = dbgc.collect(db, pause=meanwhile)
    filing_thread[0].join(15)
    assert report.deleted == 1                   # the collector deleted it …
    assert _blob(db, digest) == data             # … and the filing wrote it again
    assert dbgc.collect(db).deleted == 0


@postgresql_only
def test_a_reference_committed_while_the_collector_holds_the_blob_keeps_it(world: World) -> None:
    db = world.db
    world.file()  # a message to hang attachments on
    data = b"named while the collector looks"
    digest = _unreferenced(db, data)

    def meanwhile(step: str, locked: list[str]) -> None:
        with db.transaction() as s:              # no lock taken: only the recheck can see it
            _reference(s, digest, len(data))

    report = dbgc.collect(db, pause=meanwhile)
    assert (report.deleted, report.referenced) == (0, 1)
    assert _blob(db, digest) == data


# ------------------------------------------------------------------ the real race
def test_filings_racing_two_collectors_on_the_same_attachments_never_lose_a_named_blob(
        world: World) -> None:
    """Filers reference one of a few shared attachments (writing it when it is missing),
    check it right after their commit and while it is named, then drop the reference;
    two collectors sweep in a loop with a slow step between their two statements."""
    db = world.db
    world.file()  # a message to hang attachments on
    contents = [f"shared attachment {i} ".encode() * 5000 for i in range(3)]
    stop = threading.Event()
    failures: list[str] = []
    deleted, rounds = [0], [0]

    def slow(step: str, locked: list[str]) -> None:
        time.sleep(0.005)

    def collector() -> None:
        while not stop.is_set():
            deleted[0] += dbgc.collect(db, pause=slow).deleted

    def filer(seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            data = rnd.choice(contents)
            digest = _sha(data)
            with db.transaction() as s:
                dbblobs.store(s, [(digest, data)])
                time.sleep(rnd.uniform(0, 0.01))      # the rest of filing
                mid = s.scalar(select(Message.id).limit(1))
                att = Attachment(message_id=mid, filename="f", size=len(data), sha256=digest)
                s.add(att)
                s.flush()
                att_id = att.id
            rounds[0] += 1
            for when in ("right after its commit", "while named"):
                if _blob(db, digest) != data:
                    failures.append(f"{digest[:12]} lost {when}")
                time.sleep(rnd.uniform(0, 0.02))
            with db.transaction() as s:
                s.execute(delete(Attachment).where(Attachment.id == att_id))
            time.sleep(rnd.uniform(0, 0.05))

    threads = [threading.Thread(target=collector) for _ in range(2)]
    threads += [threading.Thread(target=filer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(30)
    assert failures == []
    assert deleted[0] > 0 and rounds[0] > 20, "the race was not exercised"
    dbgc.collect(db)
    dbgc.collect(db)
    assert world.scalar(select(func.count()).select_from(Blob)) == 0  # nothing is named now
