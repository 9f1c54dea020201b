"""The reproduced attacks of the outside security review, each file named after its attack
(``test_attack_*`` and the others), speaking the real SMTP, IMAP and HTTP interfaces; these
are their helpers: the server process's memory, raw HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of a process, in KiB, from ``/proc``."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class RawUpload:
    """Send a request with a chunked body of ``total`` bytes over a plain socket while a
    thread reads whatever the server answers; stops sending when the server stops reading
    (or closes). ``sent`` is the number of body bytes the socket accepted."""

    def __init__(self, port: int, method: str, path: str, total: int, *,
                 headers: dict[str, str] | None = None, chunk: int = 256 * 1024) -> None:
        self.port, self.method, self.path, self.total = port, method, path, total
        self.headers = headers or {}
        self.chunk = chunk
        self.sent = 0
        self.response = b""

    def _read(self, sock: socket.socket) -> None:
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                self.response += data
        except OSError:
            return

    def run(self, timeout: float = 120.0) -> int:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        reader = threading.Thread(target=self._read, args=(sock,), daemon=True)
        reader.start()
        head = [f"{self.method} {self.path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}",
                "Transfer-Encoding: chunked", "Content-Type: application/json"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        block = b"x" * self.chunk
        frame = f"{len(block):x}\r\n".encode() + block + b"\r\n"
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            while self.sent < self.total:
                if self.response:  # answered: a server that refused stops reading soon
                    break
                sock.sendall(frame)
                self.sent += len(block)
            else:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.response and reader.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        reader.join(timeout)
        return self.status

    @property
    def status(self) -> int:
        line = self.response.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0
