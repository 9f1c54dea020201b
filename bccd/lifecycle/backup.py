"""``bccd backup PATH`` / ``bccd restore PATH`` for the embedded (SQLite) deployment.

``backup(settings, path)`` → ``dict`` (the manifest). ``PATH`` must not exist (or be an
empty directory); it is built under a temporary name next to it and renamed into place
only when complete, with mode 0700 (it holds all mail and, if generated, the secret key):

    PATH/manifest.json      format, time, schema revision, counts, key fingerprint
    PATH/bccd.sqlite3       the database (SQLite online backup API: one consistent snapshot)
    PATH/blobs/ab/cd/<sha>  every blob the snapshot references and does not hold itself
                            (``storage.blobs = "fs"``), each hash-verified
    PATH/secret_key         the generated key from the data directory, if there is one

Blobs in the database (``storage.blobs = "database"``, or some of them during a
``bccd blobs migrate``) are in the snapshot with the rows that name them, and are
hash-verified there. For the others, a blob hold (``blobgc.hold``) is taken *before* the
database snapshot and released after the blobs are copied. Every file a committed row
names was written before that row committed (``BlobStore.put`` precedes the commit), so
it exists at the snapshot; the hold keeps the collector — and a migration, which removes
files by the collector's protocol — from deleting it until it is copied (see ``blobgc``
for why neither can slip between the two). The copy is then checked against the
snapshot: a missing or damaged blob fails the backup instead of producing a silent gap.
Writes go on while the backup runs (WAL: the snapshot does not block ingest).

``restore(settings, path)`` → ``dict``: into an *empty* target only — the data directory
and blob directory must be absent or empty, and the database file absent — otherwise
``RestoreError`` says what is in the way. The backup is verified first (database
integrity, every blob's hash), blobs and the key are written, and the database file is
renamed into place last, so an interrupted restore never leaves a database whose blobs
are missing. A ``bccd serve`` on the restored directory migrates it if it is older.

PostgreSQL is refused with a pointer to docs/operations.md (``pg_dump``, which holds
the blobs in the database; for blobs in files, ``pg_dump`` first, then the blob
directory under a hold — the same order and argument as above).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bccd.config import SECRET_KEY_FILE, Settings
from bccd.errors import BccdError
from bccd.lifecycle import blobgc
from bccd.log import get_logger
from bccd.private import open_private, private_dirs, private_file
from bccd.store.blobs import GC_PREFIX, BlobStore

log = get_logger("bccd.lifecycle.backup")

FORMAT = "bccd-backup/1"
MANIFEST = "manifest.json"
DB_FILE = "bccd.sqlite3"
BLOB_DIR = "blobs"
COUNTED = ("companies", "users", "threads", "messages", "attachments", "persons", "items", "links")
_CHUNK = 1 << 20


class BackupError(BccdError):
    pass


class RestoreError(BccdError):
    pass


def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(b"bccd-key-fingerprint\0" + key.encode()).hexdigest()[:16]


def _need_sqlite(settings: Settings, what: str, error: type[BccdError]) -> Path:
    path = sqlite_path(settings.database_url)
    if path is None:
        raise error(f"bccd {what} handles the embedded SQLite database; with PostgreSQL use "
                    "pg_dump and copy the blob directory as docs/operations.md describes")
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every directory under ``root`` (new directory entries are durable)."""
    if not root.exists():
        return
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        _fsync_dir(Path(dirpath))


def _copy_verified(src: Path, dst: Path, digest: str | None = None) -> int:
    """Copy ``src`` to ``dst`` (via a temporary name, fsynced); with ``digest``, refuse
    content whose SHA-256 differs. Returns the size. Directories are made 0700 and the
    copy 0600 (bccd.private)."""
    private_dirs(dst.parent)
    tmp = dst.with_name(f".tmp-{dst.name}-{secrets.token_hex(4)}")
    h = hashlib.sha256()
    size = 0
    try:
        with open(src, "rb") as fi, \
                os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as fo:
            while chunk := fi.read(_CHUNK):
                h.update(chunk)
                fo.write(chunk)
                size += len(chunk)
            fo.flush()
            os.fsync(fo.fileno())
        if digest is not None and h.hexdigest() != digest:
            raise BackupError(f"blob {digest} is damaged (its content hashes to {h.hexdigest()})")
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def _empty_or_absent(path: Path) -> bool:
    if not path.exists():
        return True
    return path.is_dir() and not any(path.iterdir())


def _snapshot(db_path: Path, target: Path) -> None:
    """SQLite online backup of the live database in one step (one read transaction)."""
    if not db_path.exists():
        raise BackupError(f"no database at {db_path}")
    src = sqlite3.connect(db_path, timeout=30)
    private_file(target)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        ok = dst.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise BackupError(f"the database snapshot failed its check: {ok}")
    finally:
        dst.close()
        src.close()
    with open(target, "rb") as f:
        os.fsync(f.fileno())


def _describe(db_file: Path) -> tuple[str | None, dict[str, int], list[str], int]:
    """The snapshot's schema revision, row counts, the digests of the blobs it references
    but does not hold (to be found as files), and how many blobs it holds — each checked
    against its digest."""
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        try:
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            revision = None
        counts = {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608
                  for t in COUNTED}
        held = _held_blobs(conn)
        digests = [r[0] for r in conn.execute(
            "SELECT DISTINCT sha256 FROM attachments ORDER BY sha256") if r[0] not in held]
    finally:
        conn.close()
    return (revision[0] if revision else None), counts, digests, len(held)


def _held_blobs(conn: sqlite3.Connection) -> set[str]:
    """The blobs a database snapshot holds itself, each hash-verified (none before the
    ``blobs`` table existed)."""
    try:
        rows = conn.execute("SELECT sha256, size FROM blobs ORDER BY sha256").fetchall()
    except sqlite3.Error:
        return set()
    for digest, size in rows:
        h, n = hashlib.sha256(), 0
        for (data,) in conn.execute("SELECT data FROM blob_chunks WHERE sha256 = ? ORDER BY n",
                                    (digest,)):
            h.update(data)
            n += len(data)
        if n != size or h.hexdigest() != digest:
            raise BackupError(f"blob {digest} in the database is damaged")
    return {r[0] for r in rows}


def _blob_file(blobs: BlobStore, digest: str) -> Path:
    """The blob's file — or, for the moment a collector or a migration holds it aside
    (``GC_PREFIX``) before putting it back under the hold, that name."""
    path = blobs.path(digest)
    if path.exists():
        return path
    return next(path.parent.glob(f"{GC_PREFIX}{digest}-*"), path)


# ------------------------------------------------------------------ backup
def backup(settings: Settings, dest: Path) -> dict[str, Any]:
    db_path = _need_sqlite(settings, "backup", BackupError)
    dest = dest.absolute()
    if not _empty_or_absent(dest):
        raise BackupError(f"{dest} already exists and is not empty: name a new directory")
    blobs = BlobStore(settings.blob_dir)
    stage = dest.parent / f".{dest.name}.partial-{secrets.token_hex(4)}"
    private_dirs(dest.parent)
    stage.mkdir(mode=0o700)
    try:
        with blobgc.hold(blobs):
            _snapshot(db_path, stage / DB_FILE)
            revision, counts, digests, in_db = _describe(stage / DB_FILE)
            missing, total = [], 0
            for d in digests:
                try:
                    total += _copy_verified(_blob_file(blobs, d),
                                            stage / BLOB_DIR / d[:2] / d[2:4] / d, d)
                except FileNotFoundError:
                    missing.append(d)
        if missing:
            raise BackupError(f"{len(missing)} blob(s) referenced by the database are missing "
                              f"from {blobs.root} (first: {missing[0]}); the backup was not made")
        key_file = settings.data_dir / SECRET_KEY_FILE
        has_key_file = key_file.exists()
        if has_key_file:
            _copy_verified(key_file, stage / SECRET_KEY_FILE)
            os.chmod(stage / SECRET_KEY_FILE, 0o600)
        manifest = {
            "format": FORMAT,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "database": "sqlite",
            "schema_revision": revision,
            "counts": counts,
            "blobs": len(digests) + in_db,
            "blobs_in_database": in_db,
            "blob_bytes": total,
            "secret_key": "file" if has_key_file else "configured",
            "secret_key_fingerprint": key_fingerprint(settings.security.secret_key)
            if settings.security.secret_key else None,
        }
        with os.fdopen(open_private(stage / MANIFEST, os.O_WRONLY | os.O_TRUNC), "w") as f:
            f.write(json.dumps(manifest, indent=2) + "\n")
        _fsync_tree(stage)
        if dest.exists():
            dest.rmdir()
        os.replace(stage, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("backup_made", path=str(dest), **{k: v for k, v in manifest.items() if k != "counts"})
    return {"path": str(dest), **manifest}


# ------------------------------------------------------------------ restore
def _read_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise RestoreError(f"{src} is not a bccd backup (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise RestoreError(f"{src / MANIFEST}: cannot read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RestoreError(f"{src}: unknown backup format {manifest.get('format')!r}")
    return manifest


def _check_target(settings: Settings, db_path: Path) -> None:
    in_the_way = []
    for label, path in (("data directory", settings.data_dir), ("blob directory", settings.blob_dir)):
        if not _empty_or_absent(path):
            in_the_way.append(f"the {label} {path.absolute()} is not empty")
    for p in (db_path, Path(f"{db_path}-wal")):
        if p.exists():
            in_the_way.append(f"a database exists at {p.absolute()}")
    if in_the_way:
        raise RestoreError("restore needs an empty data directory: " + "; ".join(in_the_way))


def restore(settings: Settings, src: Path) -> dict[str, Any]:
    db_path = _need_sqlite(settings, "restore", RestoreError)
    src = src.absolute()
    manifest = _read_manifest(src)
    _check_target(settings, db_path)
    conn = sqlite3.connect(f"file:{src / DB_FILE}?mode=ro", uri=True)
    try:
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        raise RestoreError(f"{src / DB_FILE}: not a usable database: {exc}") from None
    finally:
        conn.close()
    if ok != "ok":
        raise RestoreError(f"{src / DB_FILE} failed its integrity check: {ok}")
    try:
        _, counts, digests, in_db = _describe(src / DB_FILE)
    except BackupError as exc:
        raise RestoreError(str(exc)) from None
    blobs = BlobStore(settings.blob_dir)
    warnings = []
    total = 0
    try:
        for d in digests:
            path = src / BLOB_DIR / d[:2] / d[2:4] / d
            if not path.exists():
                raise RestoreError(f"the backup lacks blob {d} that its database references")
            total += _copy_verified(path, blobs.path(d), d)
        private_dirs(settings.data_dir)
        if (src / SECRET_KEY_FILE).exists():
            _copy_verified(src / SECRET_KEY_FILE, settings.data_dir / SECRET_KEY_FILE)
            os.chmod(settings.data_dir / SECRET_KEY_FILE, 0o600)
        fp = manifest.get("secret_key_fingerprint")
        configured = [k for k in settings.secret_keys if k]
        if fp and configured and fp not in {key_fingerprint(k) for k in configured}:
            warnings.append("the configured security.secret_key is not the key this backup was "
                            "made with: put that key back (or list it in old_secret_keys), or "
                            "per-deal addresses and stored IMAP passwords will not work")
        elif fp and not configured and not (src / SECRET_KEY_FILE).exists():
            warnings.append("the backup was made with a configured security.secret_key: "
                            "configure the same key before starting bccd")
        _fsync_tree(blobs.root)
        _fsync_tree(settings.data_dir)
        private_dirs(db_path.parent)
        _copy_verified(src / DB_FILE, db_path)  # renamed into place last
        _fsync_dir(db_path.parent)
    except BackupError as exc:
        raise RestoreError(str(exc)) from None
    result = {"path": str(src), "restored_into": str(settings.data_dir.absolute()),
              "database": str(db_path.absolute()), "created_at": manifest.get("created_at"),
              "schema_revision": manifest.get("schema_revision"), "counts": counts,
              "blobs": len(digests) + in_db, "blobs_in_database": in_db, "blob_bytes": total,
              "warnings": warnings}
    log.info("backup_restored", path=str(src), blobs=len(digests), warnings=len(warnings))
    return result
