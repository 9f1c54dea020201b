"""The floor: what bccd's libraries cost on their own, with none of bccd's logic.

``python -m bench.floor PORT DATABASE DNS_JSON PROCESSES`` — aiosmtpd, as in the sink,
whose DATA handler does per message only what any server built on this stack must do
for a DKIM-signed copy: ``dkim.verify`` (dkimpy, with the same integer and RSA helpers
bccd installs into it), pyspf's ``check2`` for the client address and envelope sender,
the standard library's parse of the message (``policy.compat32``, as bccd, whose
stricter parse of the address headers is not counted here), and an INSERT
of the message into SQLite (WAL, ``synchronous=FULL``) committed by one writer thread in
groups (every INSERT pending at that moment in one transaction), ``250`` only after the
commit. DNS answers come from memory (``DNS_JSON``: name → TXT), a cache that always
hits. There is no DMARC evaluation, address checking, linking, threading, logging or
metrics, and the CPU work runs on the event loop itself, with no hand-off to threads.
``PROCESSES`` processes share the port with ``SO_REUSEPORT``, as bccd's SMTP workers do.

So it is the least CPU per message this stack needs on the machine: a server that does
more cannot be faster. ``make bench`` (full run) measures it beside the sink and bccd,
with one process per CPU (its best), and prints its ratio to the sink.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import signal
import socket
import sqlite3
import sys
import threading
from email import policy
from pathlib import Path
from typing import Any

import dkim
import spf

import bccd.auth.authenticator  # noqa: F401 - the helpers bccd installs into dkimpy
from bench.sink import protocol

SCHEMA = ("CREATE TABLE IF NOT EXISTS message (id INTEGER PRIMARY KEY, message_id TEXT, "
          "sender TEXT, recipients TEXT, subject TEXT, raw BLOB)")
Row = tuple[str, str, str, str, bytes]


class Writer:
    """One thread commits every INSERT pending at that moment in one transaction."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: str) -> None:
        self.loop, self.path = loop, path
        self.cv = threading.Condition()
        self.pending: list[tuple[Row, asyncio.Future[None]]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, row: Row) -> asyncio.Future[None]:
        fut = self.loop.create_future()
        with self.cv:
            self.pending.append((row, fut))
            self.cv.notify()
        return fut

    def _run(self) -> None:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        while True:
            with self.cv:
                while not self.pending:
                    self.cv.wait()
                group, self.pending = self.pending, []
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO message (message_id, sender, recipients, subject, "
                               "raw) VALUES (?, ?, ?, ?, ?)", [row for row, _ in group])
                db.execute("COMMIT")
            except sqlite3.Error as exc:  # the group's clients hear it (not a hang)
                if db.in_transaction:
                    db.execute("ROLLBACK")
                for _, fut in group:
                    self.loop.call_soon_threadsafe(fut.set_exception, exc)
                continue
            for _, fut in group:
                self.loop.call_soon_threadsafe(fut.set_result, None)


class Floor:
    def __init__(self, writer: Writer, dns: dict[str, str]) -> None:
        self.writer, self.dns = writer, dns

    def dnsfunc(self, name: bytes, timeout: float = 5) -> bytes | None:
        txt = self.dns.get(name.decode().rstrip("."))
        return txt.encode() if txt else None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.content
        if not dkim.verify(raw, dnsfunc=self.dnsfunc):
            return "550 5.7.1 DKIM"
        result, _ = spf.check2(i=session.peer[0], s=envelope.mail_from, h=session.host_name)
        if result != "pass":
            return "550 5.7.1 SPF"
        m = email.message_from_bytes(raw, policy=policy.compat32)
        await self.writer.submit((str(m["Message-ID"]), str(m["From"]), str(m["To"]),
                                  str(m["Subject"]), raw))
        return "250 2.0.0 OK"


async def serve(port: int, path: str, dns: dict[str, str]) -> None:
    loop = asyncio.get_running_loop()
    handler = Floor(Writer(loop, path), dns)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    server = await loop.create_server(lambda: protocol(handler, "floor", loop), sock=sock)
    async with server:
        await server.serve_forever()


def main(port: int, path: str, dns_json: str, processes: int) -> None:
    dns: dict[str, str] = json.loads(Path(dns_json).read_text())
    spf.DNSLookup = lambda name, qtype, strict=True, timeout=None: (
        [((name, qtype), [dns[name].encode()])] if qtype == "TXT" and name in dns else [])
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SCHEMA)
    db.close()
    children: list[int] = []
    for _ in range(processes - 1):
        pid = os.fork()
        if pid == 0:
            children = []
            break
        children.append(pid)
    if children:  # the first process ends the others with itself
        def stop(signum: int, frame: Any) -> None:
            for pid in children:
                os.kill(pid, signal.SIGTERM)
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, stop)
    asyncio.run(serve(port, path, dns))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
