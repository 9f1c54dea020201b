"""A webhook receiver on loopback for the tests: records every POST (headers, body) and
answers with the next status from a script (then 204), and verifies Standard Webhooks
signatures independently of bccd's code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


def verify(secret: str, hit: Hit, *, tolerance: float = 300) -> bool:
    """The Standard Webhooks check a receiver makes."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") \
        else secret.encode()
    ts = hit.headers["webhook-timestamp"]
    if abs(time.time() - int(ts)) > tolerance:
        return False
    expected = base64.b64encode(hmac.new(key, f"{hit.id}.{ts}.".encode() + hit.body,
                                         hashlib.sha256).digest()).decode()
    return any(sig.partition(",")[0] == "v1" and hmac.compare_digest(sig.partition(",")[2], expected)
               for sig in hit.headers["webhook-signature"].split())


class Receiver:
    def __init__(self, script: list[int] | None = None) -> None:
        self.hits: list[Hit] = []
        self.script = list(script or [])
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else 204
                    receiver.hits.append(Hit({k.lower(): v for k, v in self.headers.items()},
                                             body, status, time.time()))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/bccd"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if 200 <= h.status < 300]


class PixelServer:
    """A loopback HTTP server that records every GET (the "remote image" of a message)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        pixel = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.paths.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "image/gif")
                self.send_header("content-length", str(len(pixel)))
                self.end_headers()
                self.wfile.write(pixel)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PixelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
