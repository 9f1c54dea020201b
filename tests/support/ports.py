"""Loopback ports for the servers the tests start, and waiting for them to listen.

``bind(("127.0.0.1", 0))`` hands out a port from the kernel's ephemeral range — the range
every outgoing connection also takes its source port from. Between the moment such a port
is found free and the moment the server under test binds it, another xdist worker's
``bind(0)`` or any client connection (hundreds per second in this suite) can take it: the
server then fails to bind while the test, finding the port open, talks to somebody
else's server. Polling such a port can even connect a socket to itself.

So ``free_port()`` hands out ports *below* the ephemeral range, from a block of its own
for each xdist worker (``PYTEST_XDIST_WORKER`` = ``gwN``; locked, so a second suite
running at the same time takes other blocks), in order from a random start, each checked
bindable first. Nobody else allocates there, so a port stays ours until the server that
got it binds it."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import random
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

BLOCK = 2000
FLOOR = 10000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_held: list[IO[bytes]] = []  # the lock on our block, kept for the life of the process


def _block() -> range:
    """This process's block: the first one from its worker's own that no other process
    holds (an exclusive ``flock`` on a file per block, released when the process ends),
    so two suites running at once on one machine do not share ports either."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    blocks = max(1, (_ephemeral_low() - FLOOR) // BLOCK)
    for i in range(blocks):
        start = FLOOR + ((index + i) % blocks) * BLOCK
        lock = open(Path(tempfile.gettempdir()) / f"bccd-test-ports-{start}.lock", "ab")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        _held.append(lock)
        return range(start, start + BLOCK)
    start = FLOOR + (index % blocks) * BLOCK  # every block taken: share, as before
    return range(start, start + BLOCK)


def _ports() -> Iterator[int]:
    block = _block()
    first = random.randrange(len(block))
    return itertools.cycle([*block[first:], *block[:first]])


_NEXT = _ports()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody is bound to, from this worker's own block."""
    for _ in range(BLOCK):
        port = next(_NEXT)
        if _bindable(port):
            return port
    raise RuntimeError("no free port left in this worker's block")


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None,
              name: str = "process") -> None:
    """Until something accepts on ``port``; ``proc`` exiting first is an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{name}: port {port} not listening after {timeout}s")
