"""The public tracking endpoints (SPEC §13): ``GET|HEAD /t/o/<token>`` — the 1×1 pixel —
and ``GET|HEAD /t/c/<token>`` — a link, answered ``302`` to the URL stored with the
message for the token's index.

They need no login, so every request is treated as hostile, and the work it can cause is
bounded, cheapest check first:

1. The token is verified (``tracking.tokens``: shape, MAC under the current or an old
   secret key, ``tracking.ttl``) without touching the database. Anything else —
   tampered, truncated, another message's signature, a key rotated out, expired — is
   ``404`` and redirects nowhere.
2. A per-token rate limit (``Limiter``: a bucket of ``RATE`` hits refilled over a minute)
   answers ``429`` past it, also without the database. It is kept in this process: with
   several ``bccd serve`` instances behind a load balancer, each lets ``RATE`` a minute
   through, so a token gets at most that many times the instances. Its memory is bounded
   (``MAX_KEYS`` tokens, the least recently seen forgotten first), and only verified
   tokens enter it.
3. At most ``MAX_INFLIGHT`` hits are recorded at once; past that, ``503``.
4. ``tracking.hits.record`` (group-committed: ``Database.write``) reads and updates the
   message's one tracking row and adds the hit; a message unknown (deleted) is ``404``.
   A ``bccd_session`` cookie, when the request carries one, is looked up to tell the
   sender's own views (it is never set or refreshed here).

Every answer is ``Cache-Control: no-store``, sets no cookie, and carries
``Referrer-Policy: no-referrer`` (the page a link leads to does not learn the token).
The pixel is a 43-byte transparent GIF; the hidden decoy link answers an empty page. A
redirect's ``Location`` is the stored URL, percent-encoded where a header needs it —
never anything taken from the request: there is no open redirect.
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections import OrderedDict
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bccd import metrics
from bccd.log import get_logger
from bccd.tracking import hits, tokens
from bccd.web.session import COOKIE, SessionData, Sessions

if TYPE_CHECKING:
    from bccd.runtime import Services

log = get_logger("bccd.tracking")

RATE = 10                 # hits per token a minute (SPEC: at least 5 pass)
MAX_KEYS = 100_000        # tokens the limiter remembers
MAX_INFLIGHT = 64         # hits being recorded at once
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
HEADERS = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache",
           "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "X-Robots-Tag": "noindex, nofollow"}
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


class Limiter:
    """Token buckets, one per key: ``rate`` requests, refilled evenly over ``per``
    seconds; at most ``max_keys`` keys (the least recently used are dropped)."""

    def __init__(self, rate: int = RATE, per: float = 60.0, max_keys: int = MAX_KEYS) -> None:
        self.rate, self.per, self.max_keys = rate, per, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 when the request may pass (and is counted); else seconds until one may."""
        level, at = self._buckets.pop(key, (float(self.rate), now))
        level = min(float(self.rate), level + (now - at) * self.rate / self.per)
        wait = 0.0
        if level >= 1.0:
            level -= 1.0
        else:
            wait = (1.0 - level) * self.per / self.rate
        self._buckets[key] = (level, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def _location(url: str) -> str:
    return urllib.parse.quote(url, safe=_URL_SAFE)


class Tracking:
    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        self.keys = [tokens.derive(k) for k in settings.secret_keys if k]
        self.ttl = settings.tracking.ttl
        self.sessions = Sessions(settings)
        self.limiter = Limiter()
        self.inflight = 0

    def _is_sender(self, s: Session, token_hash: str, user_id: int) -> bool:
        found = self.sessions.user(s, SessionData(token_hash))
        return found is not None and found[1].id == user_id

    async def pixel(self, request: Request) -> Response:
        return await self._hit(request, "o")

    async def link(self, request: Request) -> Response:
        return await self._hit(request, "c")

    async def _hit(self, request: Request, kind: str) -> Response:
        token = str(request.path_params.get("token", ""))
        claim = tokens.verify(self.keys, kind, token, now=int(time.time()), ttl=self.ttl)
        if claim is None:
            metrics.tracking_refused("invalid")
            return _not_found()
        wait = self.limiter.take(f"{kind}:{token}", time.monotonic())
        if wait:
            metrics.tracking_refused("rate_limited")
            return Response("Too many requests\n", status_code=429, media_type="text/plain",
                            headers={**HEADERS, "Retry-After": str(max(1, round(wait)))})
        if self.inflight >= MAX_INFLIGHT:
            metrics.tracking_refused("busy")
            return Response("Busy, try again\n", status_code=503, media_type="text/plain",
                            headers={**HEADERS, "Retry-After": "1"})
        session = self.sessions.read(request.cookies.get(COOKIE))
        h = request.headers
        hit = hits.Hit(claim, method=request.method, user_agent=h.get("user-agent", ""),
                       purpose=" ".join(h.get(n, "") for n in (
                           "purpose", "sec-purpose", "x-purpose", "x-moz")).strip(),
                       session_hash=session.token_hash if session is not None else None)
        self.inflight += 1
        try:
            out = await self.services.db.write(hits.record, hit, self._is_sender)
        except Exception as exc:  # the database is away: nothing recorded, say so
            log.warning("tracking_hit_failed", error=type(exc).__name__)
            metrics.tracking_refused("busy")
            return Response("Busy, try again\n", status_code=503, media_type="text/plain",
                            headers={**HEADERS, "Retry-After": "5"})
        finally:
            self.inflight -= 1
        if not out.found:
            metrics.tracking_refused("unknown")
            return _not_found()
        what = "open" if kind == "o" else "click"
        if out.kind is None:
            metrics.tracking_refused("off")
        else:
            metrics.tracking_hit(what, out.kind, out.code or "")
        if out.reclassified:
            metrics.tracking_reclassified()
        if kind == "o":
            return Response(PIXEL, media_type="image/gif", headers=HEADERS)
        if out.url is None:  # the decoy: nothing to see, nowhere to go
            return Response("", media_type="text/html", headers=HEADERS)
        return Response(status_code=302, headers={**HEADERS, "Location": _location(out.url)})


def _not_found() -> Response:
    return Response("Not found\n", status_code=404, media_type="text/plain", headers=HEADERS)


async def _elsewhere(request: Request) -> Response:
    """Any other address under ``/t/``: the same ``404`` as a bad token."""
    metrics.tracking_refused("invalid")
    return _not_found()


def routes(services: Services) -> list[BaseRoute]:
    t = Tracking(services)
    return [Route("/t/o/{token}", t.pixel, methods=["GET", "HEAD"]),
            Route("/t/c/{token}", t.link, methods=["GET", "HEAD"]),
            Route("/t/{rest:path}", _elsewhere, methods=["GET", "HEAD"])]
