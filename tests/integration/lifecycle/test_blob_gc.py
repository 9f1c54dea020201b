"""``bccd.lifecycle.blobgc``: unreferenced blobs are collected, and a blob an ingest is
about to reference is never lost — each step of the protocol is interleaved with a
``put`` or a commit deterministically, then ingests and the collector race for real.
On SQLite and PostgreSQL (function level: the database and a blob directory)."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from bccd.lifecycle import blobgc
from bccd.store.blobs import BlobStore
from bccd.store.db import Database
from bccd.store.models import Attachment
from tests.integration.lifecycle.helpers import bare_message


def _reference(db: Database, message_id: int, digest: str) -> int:
    with db.transaction() as s:
        att = Attachment(message_id=message_id, filename="f", size=1, sha256=digest)
        s.add(att)
        s.flush()
        return att.id


def _age(blobs: BlobStore, digest: str, seconds: float = 3600) -> None:
    past = time.time() - seconds
    os.utime(blobs.path(digest), (past, past))


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".gc-*")]


def test_unreferenced_old_blobs_go_and_referenced_or_young_ones_stay(
        function_db: Database, blob_root: Path) -> None:
    blobs = BlobStore(blob_root)
    mid = bare_message(function_db)
    old, used, young = (blobs.put(x) for x in (b"old", b"used", b"young"))
    _age(blobs, old)
    _age(blobs, used)
    _reference(function_db, mid, used)
    report = blobgc.collect(function_db, blobs, grace=60)
    assert (report.deleted, report.referenced, report.young) == (1, 1, 1)
    assert not blobs.path(old).exists()
    assert blobs.path(used).exists() and blobs.path(young).exists()
    assert _leftovers(blob_root) == []


def test_a_put_between_the_check_and_the_rename_keeps_the_blob(
        function_db: Database, blob_root: Path) -> None:
    blobs = BlobStore(blob_root)
    mid = bare_message(function_db)
    digest = blobs.put(b"attachment")
    _age(blobs, digest)

    def ingest(step: str, d: str) -> None:
        if step == "before_rename":
            assert blobs.put(b"attachment") == d  # refreshes the mtime

    report = blobgc.collect(function_db, blobs, grace=60, pause=ingest)
    _reference(function_db, mid, digest)  # the ingest commits after the pass
    assert report.deleted == 0 and report.young == 1
    assert blobs.get(digest) == b"attachment"


def test_a_put_while_the_blob_is_renamed_away_writes_it_again(
        function_db: Database, blob_root: Path) -> None:
    blobs = BlobStore(blob_root)
    mid = bare_message(function_db)
    digest = blobs.put(b"attachment")
    _age(blobs, digest)

    def ingest(step: str, d: str) -> None:
        if step == "after_rename":
            assert not blobs.path(d).exists()
            assert blobs.put(b"attachment") == d

    report = blobgc.collect(function_db, blobs, grace=60, pause=ingest)
    _reference(function_db, mid, digest)
    assert report.deleted == 1  # the old file; the fresh one stays
    assert blobs.get(digest) == b"attachment"
    assert _leftovers(blob_root) == []


def test_a_reference_committed_while_the_blob_is_away_puts_it_back(
        function_db: Database, blob_root: Path) -> None:
    blobs = BlobStore(blob_root)
    mid = bare_message(function_db)
    digest = blobs.put(b"attachment")
    _age(blobs, digest)

    def commit(step: str, _d: str) -> None:
        if step == "before_recheck":
            _reference(function_db, mid, digest)

    report = blobgc.collect(function_db, blobs, grace=60, pause=commit)
    assert report.deleted == 0 and report.referenced == 1
    assert blobs.get(digest) == b"attachment"


def test_nothing_is_deleted_while_a_backup_holds_the_blobs(
        function_db: Database, blob_root: Path) -> None:
    blobs = BlobStore(blob_root)
    digest = blobs.put(b"orphan")
    _age(blobs, digest)
    with blobgc.hold(blobs):
        report = blobgc.collect(function_db, blobs, grace=0)
        assert report.held and report.deleted == 0 and blobs.path(digest).exists()
    assert blobgc.collect(function_db, blobs, grace=0).deleted == 1


def test_a_pass_interrupted_after_the_rename_loses_nothing(
        function_db: Database, blob_root: Path) -> None:
    blobs = BlobStore(blob_root)
    mid = bare_message(function_db)
    digest = blobs.put(b"attachment")
    _reference(function_db, mid, digest)
    path = blobs.path(digest)
    os.rename(path, path.with_name(f".gc-{digest}-crashed"))  # a collector died here
    later = time.time() + blobgc.TRASH_STALE_AGE + 1
    report = blobgc.collect(function_db, blobs, grace=60, clock=lambda: later)
    assert report.recovered == 1 and blobs.get(digest) == b"attachment"
    assert _leftovers(blob_root) == []


def test_ingests_racing_the_collector_on_the_same_attachment_never_lose_a_referenced_blob(
        function_db: Database, blob_root: Path) -> None:
    """Ingest-like writers put a few shared attachments, commit a reference after a short
    delay, check the blob, and drop the reference again, while a collector with a short
    grace period (and a slow disk) sweeps in a loop."""
    db, blobs = function_db, BlobStore(blob_root)
    mid = bare_message(db)
    contents = [f"shared attachment {i}".encode() for i in range(2)]
    grace = 0.25
    stop = threading.Event()
    failures: list[str] = []
    deleted, checked_rounds = [0], [0]

    def slow_disk(step: str, _d: str) -> None:
        time.sleep(0.01)  # widen every window between the collector's steps

    def collector() -> None:
        while not stop.is_set():
            deleted[0] += blobgc.collect(db, blobs, grace=grace, pause=slow_disk).deleted

    def ingest(seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            data = rnd.choice(contents)
            put_at = time.time()
            digest = blobs.put(data)
            time.sleep(rnd.uniform(0, 0.03))          # filing takes a while (< grace)
            att = _reference(db, mid, digest)
            # the protocol's assumption: the reference commits within ``grace`` of the put
            # (module docstring); a loaded machine may stall a writer past it, and then
            # the blob may rightly be gone: no verdict on such a round
            checked = time.time() - put_at < grace
            checked_rounds[0] += checked
            for when in ("right after its commit", "while referenced") if checked else ():
                try:
                    if blobs.get(digest) != data:
                        failures.append(f"{digest} damaged {when}")
                except FileNotFoundError:
                    failures.append(f"{digest} missing {when}")
                time.sleep(rnd.uniform(0, 0.05))
            with db.transaction() as s:
                s.execute(delete(Attachment).where(Attachment.id == att))
            time.sleep(rnd.uniform(0, 0.6))            # sometimes long enough to age out

    threads = [threading.Thread(target=collector)]
    threads += [threading.Thread(target=ingest, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(30)
    assert failures == []
    assert deleted[0] > 0, "the collector never deleted anything: the race was not exercised"
    assert checked_rounds[0] > 0, "no round filed within the grace period: nothing was checked"
    assert _leftovers(blob_root) == []


def test_a_stopping_server_ends_a_gc_pass_between_batches_and_the_next_pass_finishes(
        function_db: Database, blob_root: Path) -> None:
    """``stop`` (set when ``bccd serve`` stops) must not wait for a whole sweep of a big
    blob store: the batch under way finishes, the rest is left for the next pass."""
    from bccd.lifecycle.cascade import CHUNK

    blobs = BlobStore(blob_root)
    digests = [blobs.put(b"orphan %d" % i) for i in range(CHUNK + 7)]
    for d in digests:
        _age(blobs, d)
    stop = threading.Event()

    def stopping(step: str, digest: str) -> None:
        stop.set()  # the server stops while the first batch is under way

    report = blobgc.collect(function_db, blobs, grace=60, pause=stopping, stop=stop)
    assert report.stopped and (report.deleted, report.deferred) == (CHUNK, 7)
    assert sum(blobs.path(d).exists() for d in digests) == 7
    assert _leftovers(blob_root) == []
    again = blobgc.collect(function_db, blobs, grace=60)
    assert not again.stopped and again.deleted == 7
    assert not any(blobs.path(d).exists() for d in digests)


def test_a_stopping_server_ends_a_purge_between_batches(function_db: Database) -> None:
    import datetime as dt

    from bccd.lifecycle import retention
    from bccd.store.models import Rejection

    with function_db.transaction() as s:
        s.add_all(Rejection(recipient=f"acme+x{i}@bcc.test", mail_from="m@evil.test",
                            code="550 5.7.1", reason="no") for i in range(5))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    stop = threading.Event()
    stop.set()
    assert retention.purge_rejections(function_db, 0, now=later, batch=2, stop=stop) == 0
    # the server stops while the first batch commits: that batch counts, the rest waits
    stop.clear()
    real = function_db.transaction

    def stopping_after_this_one() -> Any:
        stop.set()
        return real()

    function_db.transaction = stopping_after_this_one  # type: ignore[method-assign]
    try:
        assert retention.purge_rejections(function_db, 0, now=later, batch=2, stop=stop) == 2
    finally:
        del function_db.transaction
    with function_db.read() as s:
        assert s.scalar(select(func.count()).select_from(Rejection)) == 3
    assert retention.purge_rejections(function_db, 0, now=later, batch=2) == 3


async def test_the_lifecycle_worker_tells_a_pass_under_way_that_the_server_stops(
        function_db: Database, tmp_path: Path, monkeypatch) -> None:
    """``bccd serve`` stopping sets the pass's ``stop`` at once (the pass runs in a
    database thread and would otherwise run to its end before the stop completes)."""
    import asyncio
    from types import SimpleNamespace

    from bccd.config import Settings
    from bccd.lifecycle import retention, worker

    started, seen = threading.Event(), []

    def long_pass(db: Database, blobs: BlobStore, settings: Settings, *,
                  stop: threading.Event) -> retention.RetentionReport:
        started.set()
        seen.append(stop.wait(10))  # a sweep of a big store: batch after batch
        return retention.RetentionReport(0, 0, blobgc.GcReport(stopped=True))

    monkeypatch.setattr(retention, "run_once", long_pass)
    settings = Settings.model_validate({
        "storage": {"data_dir": str(tmp_path / "data")},
        "security": {"secret_key": "k"}, "retention": {"interval": 1}})
    services = SimpleNamespace(settings=settings, db=function_db, blobs=BlobStore(tmp_path / "b"))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.lifecycle_worker(services, stop))  # type: ignore[arg-type]
    assert await asyncio.to_thread(started.wait, 10)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert seen == [True]
