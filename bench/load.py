"""An asyncio SMTP load generator: N concurrent sessions, each reusing its connection,
sending pre-built messages; records per-message latency (MAIL FROM → reply to DATA).

Kept minimal on purpose (plain streams, no client library) so that the client's own cost
is small and the same for every server it is pointed at."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    errors: int = 0
    reconnects: int = 0          # connections the server ended with 421, opened again
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    replies: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0             # the server's CPU seconds (user + system, every process)
    client_cpu: float = 0.0      # the load generator's own CPU seconds in the same run

    @property
    def rate(self) -> float:
        return self.accepted / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_per_msg(self) -> float:
        """The server's CPU seconds per accepted message (0 when not measured)."""
        return self.per_msg(self.cpu)

    @property
    def client_cpu_per_msg(self) -> float:
        """The load generator's CPU seconds per accepted message: what the clients take
        of the same two cores."""
        return self.per_msg(self.client_cpu)

    def per_msg(self, seconds: float) -> float:
        return seconds / self.accepted if self.accepted else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def _reply(reader: asyncio.StreamReader) -> str:
    while True:
        line = (await reader.readline()).decode("latin-1")
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != "-":
            return line.rstrip()


def dot_stuff(raw: bytes) -> bytes:
    data = raw.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


async def _session(port: int, queue: asyncio.Queue[tuple[str, str, bytes]], res: LoadResult,
                   interval: float | None, offset: float = 0.0) -> None:
    """One client: a connection reused for message after message — and, like a real
    client, a new connection when the server ends one with ``421`` (bccd does after
    ``smtp.command_call_limit`` transactions), the message then sent again on it."""
    while not queue.empty():
        if not await _connection(port, queue, res, interval, offset):
            return
        offset = 0.0  # only the first connection waits to spread the sessions' starts
        res.reconnects += 1


async def _connection(port: int, queue: asyncio.Queue[tuple[str, str, bytes]], res: LoadResult,
                      interval: float | None, offset: float) -> bool:
    """True when the server ended the connection with 421 (the caller reconnects)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if offset:
        await asyncio.sleep(offset)  # paced sessions start spread out, not in lockstep
    try:
        await _reply(reader)
        writer.write(b"EHLO load.test\r\n")
        await _reply(reader)
        while True:
            try:
                mail_from, rcpt, data = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            t0 = time.perf_counter()
            writer.write(f"MAIL FROM:<{mail_from}>\r\n".encode())
            r1 = await _reply(reader)
            if r1.startswith("421"):
                queue.put_nowait((mail_from, rcpt, data))
                return True
            writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
            r2 = await _reply(reader)
            if not (r1.startswith("250") and r2.startswith("250")):
                writer.write(b"RSET\r\n")
                await _reply(reader)
                res.refused += 1
                continue
            writer.write(b"DATA\r\n")
            await _reply(reader)
            writer.write(data)
            r = await _reply(reader)
            res.sent += 1
            res.latencies.append(time.perf_counter() - t0)
            res.replies[r[:9]] = res.replies.get(r[:9], 0) + 1
            if r.startswith("250"):
                res.accepted += 1
            else:
                res.refused += 1
            if interval:
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))
        writer.write(b"QUIT\r\n")
        await writer.drain()
    except (ConnectionError, OSError):
        res.errors += 1
    finally:
        writer.close()
    return False


async def run_load(port: int, messages: list[tuple[str, str, bytes]], concurrency: int,
                   rate: float | None = None) -> LoadResult:
    """Send every message once; ``rate`` (msgs/s, overall) paces the sessions: each sends
    one message per ``concurrency / rate`` seconds, their starts evenly spread over that
    interval (a steady arrival rate rather than bursts of ``concurrency`` at once)."""
    queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue()
    for m in messages:
        queue.put_nowait((m[0], m[1], dot_stuff(m[2])))
    res = LoadResult()
    interval = concurrency / rate if rate else None
    t0 = time.perf_counter()
    await asyncio.gather(*(_session(port, queue, res, interval,
                                     i * interval / concurrency if interval else 0.0)
                            for i in range(concurrency)))
    res.elapsed = time.perf_counter() - t0
    return res
