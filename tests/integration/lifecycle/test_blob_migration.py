"""``bccd blobs migrate`` at function level, on SQLite and PostgreSQL: files move into the
database and back; a file is removed only once the database holds it (or nothing names
it), never while it is young or a backup holds the blobs; a damaged file is reported and
left alone; ``status`` says what each store holds and what neither does."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from bccd.lifecycle import blobgc, blobmove
from bccd.store import dbblobs
from bccd.store.blobs import Blobs, BlobStore
from bccd.store.db import Database
from bccd.store.models import Attachment
from tests.integration.lifecycle.helpers import bare_message


def _name(db: Database, message_id: int, digest: str) -> None:
    with db.transaction() as s:
        s.add(Attachment(message_id=message_id, filename="f", size=1, sha256=digest))


def _age(files: BlobStore, digest: str) -> None:
    past = time.time() - 7200
    os.utime(files.path(digest), (past, past))


def _read(db: Database, blobs: Blobs, digest: str) -> bytes:
    with db.read() as s:
        return blobs.get(s, digest)


def test_files_move_into_the_database_and_back_and_stay_readable_throughout(
        function_db: Database, tmp_path: Path) -> None:
    db = function_db
    files = BlobStore(tmp_path / "blobs")
    mid = bare_message(db)
    named = [os.urandom(1000 + i) for i in range(5)]
    for data in named:
        d = files.put(data)
        _name(db, mid, d)
        _age(files, d)
    orphan = files.put(b"nothing names me")
    _age(files, orphan)
    young = files.put(b"named, but written a moment ago")
    _name(db, mid, young)

    blobs = Blobs("database", files)
    moved = blobmove.to_database(db, blobs, grace=3600)
    assert (moved.copied, moved.removed, moved.deferred, moved.damaged) == (6, 6, 1, [])
    assert moved.left == {"fs": 1, "database": 6}          # the young file waits
    assert not files.path(orphan).exists()                 # collected, not copied
    for data in named:
        assert _read(db, blobs, hashlib.sha256(data).hexdigest()) == data
    again = blobmove.to_database(db, blobs, grace=0)
    assert (again.copied, again.removed, again.left) == (0, 1, {"fs": 0, "database": 6})

    back = blobmove.to_files(db, Blobs("fs", files))
    assert (back.copied, back.left) == (6, {"fs": 6, "database": 0})
    st = blobmove.status(db, Blobs("fs", files))
    assert (st.files, st.database, st.missing, st.mixed) == (6, 0, 0, False)
    for data in named:
        assert files.get(hashlib.sha256(data).hexdigest()) == data


def test_a_migration_leaves_files_alone_while_a_backup_holds_them(
        function_db: Database, tmp_path: Path) -> None:
    db, files = function_db, BlobStore(tmp_path / "blobs")
    mid = bare_message(db)
    d = files.put(b"held by a backup")
    _name(db, mid, d)
    _age(files, d)
    with blobgc.hold(files):
        moved = blobmove.to_database(db, Blobs("database", files), grace=60)
    assert (moved.copied, moved.removed, moved.deferred) == (1, 0, 1)
    assert files.path(d).exists()
    assert blobmove.to_database(db, Blobs("database", files), grace=60).removed == 1


def test_a_damaged_file_is_reported_and_left_alone_and_status_names_what_is_missing(
        function_db: Database, tmp_path: Path) -> None:
    db, files = function_db, BlobStore(tmp_path / "blobs")
    mid = bare_message(db)
    d = files.put(b"the original content")
    _name(db, mid, d)
    _age(files, d)
    files.path(d).write_bytes(b"bit rot")
    _age(files, d)
    _name(db, mid, "f" * 64)                               # named, and in no store
    blobs = Blobs("database", files)
    moved = blobmove.to_database(db, blobs, grace=60)
    assert moved.damaged == [d] and moved.copied == 0 and files.path(d).exists()
    with db.read() as s:
        assert dbblobs.present(s, [d]) == set()
    st = blobmove.status(db, blobs)
    assert (st.missing, st.missing_examples, st.mixed) == (1, ["f" * 64], True)
