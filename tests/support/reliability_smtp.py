"""Raw-socket SMTP/LMTP helpers for the reliability tests, and outside faults.

- ``Raw(port)``: one TCP connection; ``reply()`` reads one (multi-line) reply as
  ``(code, last_line)``; ``cmd(line)`` sends one command and reads its reply; ``send``
  writes bytes as they are (pipelining, smuggling, slowloris); ``closed()`` tells whether
  the server hung up. ``source`` binds the client address (e.g. ``127.0.0.2``).
- ``dot_stuff(raw)``: the DATA payload for ``raw``, terminator included.
- ``SqliteLock(path)``: another *process* holding ``BEGIN EXCLUSIVE`` on a SQLite file
  until ``release()`` (a context manager too).
- ``stored(db_path)``: ``{message_id: rows}`` of the messages table, read directly.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType


class Raw:
    def __init__(self, port: int, *, host: str = "127.0.0.1", timeout: float = 15,
                 source: str | None = None, greet: bool = True) -> None:
        self.sock = socket.create_connection((host, port), timeout,
                                             source_address=(source, 0) if source else None)
        self.f = self.sock.makefile("rb")
        try:
            self.greeting = self.reply() if greet else (0, "")
        except BaseException:
            self.close()
            raise

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text[3:4] != "-":
                return int(text[:3]), text

    def lines(self) -> list[str]:
        """Every line of one (multi-line) reply."""
        out = []
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            out.append(text)
            if text[3:4] != "-":
                return out

    def cmd(self, line: str | bytes) -> tuple[int, str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.f.read(1) == b""
        except (TimeoutError, ConnectionError):
            return False

    def close(self) -> None:
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dot_stuff(raw: bytes) -> bytes:
    data = raw.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


_LOCKER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
c.execute("ROLLBACK")
c.close()
"""


class SqliteLock:
    """An external process that holds an exclusive lock on a SQLite database."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"locked":
            self.proc.kill()
            raise RuntimeError("could not lock the database")
        self.locked_at = time.monotonic()

    def release(self) -> float:
        """Let go of the lock; returns how long it was held."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        return time.monotonic() - self.locked_at

    def __enter__(self) -> SqliteLock:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def stored(db_path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT message_id, COUNT(*) FROM messages GROUP BY message_id").fetchall()
    finally:
        conn.close()
    return {str(mid): int(n) for mid, n in rows}


def query(db_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def stored_at(url: str) -> dict[str, int]:
    """``stored`` for any database URL (SQLite or PostgreSQL), through SQLAlchemy."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT message_id, COUNT(*) FROM messages GROUP BY message_id")).all()
    finally:
        engine.dispose()
    return {str(mid): int(n) for mid, n in rows}


def raw_digests_at(url: str) -> dict[str, str]:
    """``{message_id: sha256 of the stored raw bytes}``."""
    import hashlib

    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT m.message_id, r.raw FROM messages m JOIN message_raw r "
                "ON r.message_id = m.id")).all()
    finally:
        engine.dispose()
    return {str(mid): hashlib.sha256(bytes(raw)).hexdigest() for mid, raw in rows}
