"""Files and directories that only bccd's own user may read (SPEC §10).

Everything bccd writes under the data directory (database, blobs, secret key, backups),
and the SQLite database with its ``-wal``/``-shm`` wherever ``database.url`` puts it, is
created with its final mode — directories 0700, files 0600 — whatever the umask: modes
are given to ``mkdir`` and ``open`` at creation (a umask can only take bits away, so
these come out exactly), never by changing the process's umask, which is shared by
every thread. SQLite creates ``-wal`` and ``-shm`` with the mode of the database file,
so the database file is created here, 0600 and empty, before SQLite first opens it.

- ``private_dirs(path)`` — ``path`` and each missing parent, mode 0700;
- ``private_file(path)`` — create an empty file with mode 0600 unless it exists;
- ``open_private(path, flags)`` — ``os.open`` that creates with mode 0600;
- ``open_to_others(paths)`` — ``(path, mode)`` of each path (directories walked) that
  its group or others may use: what ``bccd doctor`` reports.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dirs(path: Path) -> None:
    missing: list[Path] = []
    p = Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:  # made meanwhile (another process): keep its mode
            pass
    if not Path(path).is_dir():
        raise NotADirectoryError(str(path))


def private_file(path: Path) -> None:
    private_dirs(Path(path).parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass


def open_private(path: Path | str, flags: int) -> int:
    return os.open(path, flags | os.O_CREAT, FILE_MODE)


def open_to_others(paths: Iterable[Path]) -> Iterator[tuple[Path, int]]:
    seen: set[Path] = set()
    for root in paths:
        if root in seen or not os.path.lexists(root):
            continue
        seen.add(root)
        entries: Iterable[Path] = [root]
        if root.is_dir() and not root.is_symlink():
            entries = _walk(root)
        for p in entries:
            try:
                mode = stat.S_IMODE(os.lstat(p).st_mode)
            except FileNotFoundError:  # removed while we looked (a blob collected)
                continue
            if mode & 0o077 and not stat.S_ISLNK(os.lstat(p).st_mode):
                yield p, mode


def _walk(root: Path) -> Iterator[Path]:
    yield root
    for dirpath, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            yield Path(dirpath) / name
