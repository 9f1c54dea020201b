"""Content-addressed blob storage for attachments: ``<blob_dir>/ab/cd/<sha256>``.

``put(data)`` writes to a temporary file, fsyncs it, renames it into place and fsyncs the
directory, so a blob is durable *before* the database row that references it commits.
Identical content is stored once, and ``put`` of content already stored refreshes the
blob's mtime: the garbage collector (``bccd.lifecycle.blobgc``) relies on that. Blobs are
never served by hash alone: the API finds them through a message the caller may see
(``bccd.mailstore.attachments.attachment_for_user``). ``get`` also finds a blob the collector has
taken aside for a moment (``GC_PREFIX``), so a reader never sees that gap.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from bccd.private import private_dirs

GC_PREFIX = ".gc-"  # the garbage collector's private names: .gc-<sha256>-<random>


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        try:
            # refresh mtime so a concurrent GC pass (which spares young blobs) keeps it;
            # see bccd.lifecycle.blobgc for why this makes the race impossible
            os.utime(target)
            return digest
        except FileNotFoundError:
            pass  # absent, or a GC pass moved it away this instant: write it (again)
        private_dirs(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return digest

    def get(self, sha256: str) -> bytes:
        path = self.path(sha256)
        for _ in range(3):
            try:
                return path.read_bytes()
            except FileNotFoundError:
                pass
            # a collector may hold it under a private name for a moment while it checks
            # for new references (bccd.lifecycle.blobgc): the content is the same
            for held in path.parent.glob(f"{GC_PREFIX}{sha256}-*"):
                try:
                    return held.read_bytes()
                except FileNotFoundError:
                    continue
        raise FileNotFoundError(str(path))

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False
