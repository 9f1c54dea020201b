"""Request body limits (SPEC §9): every body is limited while it streams and answered
``413`` past the limit, before any other work.

``BodyLimit(app, table)`` is ASGI middleware in front of everything bccd serves over HTTP
(the API, the Mail page and its sign-in, the confirmation page, ``/metrics``). For each
request it takes the limit of the path from ``BodyTable`` (the longest matching path
prefix), then:

- a declared ``Content-Length`` over the limit (or not a number) → ``413`` at once, not a
  byte of the body read;
- otherwise the body is read *here*, counting the bytes of each ``http.request`` message
  as it arrives (a chunked body included), before the application sees the request:
  past the limit → ``413``; within it, the application gets the body as one message.
  No handler, no authentication and no database work runs for a request that is too
  large, and at most ``limit`` bytes of a body are ever held.

The ``413`` is problem details under ``/api/`` and a short page elsewhere, and carries
``Connection: close``: the server closes the connection instead of reading (and
discarding) the rest of a body it refused.

The limits (``http.max_body``, ``http.body_limits``; see ``conf/bccd.toml``):

=========================  =====================================================
``/api/v1``                1 MiB — the largest JSON body the API takes today
``/api/v1/messages``       ``smtp.max_message_size`` in base64 (× 4/3) + 1 MiB
                           of JSON around it (compose, SPEC §12)
``/t``                     0 — the public tracking endpoints take no body (SPEC §13)
everything else            ``http.max_body`` (64 KiB): forms, sign-in, confirmation
=========================  =====================================================

``http.body_limits`` adds entries or replaces these (``{"/api/v1" = "2MiB"}``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bccd.config import Settings

API_BODY = 1024 * 1024
JSON_OVERHEAD = 1024 * 1024


SETTINGS_BODY = 512 * 1024


def compose_limit(max_message_size: int) -> int:
    """A compose body: the message in base64 (4/3 of its size) plus JSON around it."""
    return -(-max_message_size * 4 // 3) + JSON_OVERHEAD


@dataclass(frozen=True, slots=True)
class BodyTable:
    """Path prefix → limit in bytes; ``default`` for paths no prefix matches."""

    default: int
    prefixes: tuple[tuple[str, int], ...]  # longest first

    @classmethod
    def build(cls, default: int, table: Mapping[str, int]) -> BodyTable:
        items = sorted(((p.rstrip("/") or "/", n) for p, n in table.items()),
                       key=lambda item: len(item[0]), reverse=True)
        return cls(default, tuple(items))

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyTable:
        compose = compose_limit(settings.smtp.max_message_size)
        table = {"/api/v1": API_BODY, "/api/v1/messages": compose,
                 "/mail/compose": compose,          # the Mail page's compose form (SPEC §12)
                 "/mail/settings": SETTINGS_BODY,   # a signature may hold a small image
                 "/t": 0}                           # tracking (SPEC §13): GET/HEAD, no body
        table.update(settings.http.body_limits)
        return cls.build(settings.http.max_body, table)

    def limit(self, path: str) -> int:
        for prefix, n in self.prefixes:
            if path == prefix or path.startswith(prefix + "/") or prefix == "/":
                return n
        return self.default


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: ASGIApp, table: BodyTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.table.limit(path)
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            await _refuse(path, limit, send)
            return
        try:
            body = await _read(receive, limit)
        except _TooLarge:
            await _refuse(path, limit, send)
            return
        if body is None:  # the client went away before sending its body
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or ``_TooLarge`` as soon as more than ``limit`` bytes arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def _refuse(path: str, limit: int, send: Send) -> None:
    detail = f"request bodies here are limited to {limit} bytes"
    if path.startswith("/api/"):
        body = json.dumps({"type": "about:blank", "title": "Content Too Large", "status": 413,
                           "detail": detail}).encode()
        ctype = b"application/problem+json"
    else:
        body = (f"<!doctype html><title>Request too large</title>"
                f"<h1>Request too large</h1><p>{detail}.</p>").encode()
        ctype = b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", ctype), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})
