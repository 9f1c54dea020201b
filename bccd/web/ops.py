"""``/metrics`` (SPEC §9, §10): Prometheus text format, every name prefixed ``bccd_``.

Who may scrape: a client whose address is in ``http.metrics_allow`` (CIDRs; default
loopback only), or a request carrying ``Authorization: Bearer <http.metrics_token>``
(compared in constant time); anyone else gets ``403``. The address is the TCP peer's:
``X-Forwarded-For`` and the like are never believed here, and a request that carries
one of them (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``) came through a proxy —
which on the same host connects from loopback on behalf of anyone — so it is judged by
the token alone.

The gauges read from the database (IMAP accounts by state, outbox depth) are cached:
a scrape reads the database only when the cached values are older than ``DB_TTL``
seconds, and concurrent scrapes share that one read (``bccd_metrics_db_reads_total``
counts them: sixty scrapes in a few seconds make one). The read runs through
``Database.run``, so the event loop never blocks; counters and the ingest latency
histogram are live in the process.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bccd import metrics

if TYPE_CHECKING:
    from bccd.runtime import Services

DB_TTL = 15.0
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


class MetricsAccess:
    """The ``/metrics`` access rule (see the module docstring)."""

    def __init__(self, allow: list[str], token: str) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allow]
        self.token = token.encode()

    def allowed(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if self.token and scheme.lower() == "bearer" and \
                hmac.compare_digest(given.strip().encode(), self.token):
            return True
        if any(h in request.headers for h in PROXY_HEADERS):
            return False
        peer = request.scope.get("client")
        if not peer:
            return False
        try:
            ip = ipaddress.ip_address(peer[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)


class _DbGauges:
    """The database-backed gauges, refreshed at most every ``DB_TTL`` seconds."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.fresh_until = 0.0
        self.lock = asyncio.Lock()

    async def refresh(self) -> None:
        if time.monotonic() < self.fresh_until:
            return
        async with self.lock:
            if time.monotonic() < self.fresh_until:
                return  # another scrape refreshed them while this one waited
            await self.services.db.run(metrics.collect_db, self.services.db)
            self.fresh_until = time.monotonic() + DB_TTL


def routes(services: Services) -> list[BaseRoute]:
    access = MetricsAccess(services.settings.http.metrics_allow,
                           services.settings.http.metrics_token)
    gauges = _DbGauges(services)

    async def scrape(request: Request) -> Response:
        if not access.allowed(request):
            return PlainTextResponse("Forbidden: /metrics answers the addresses in "
                                     "http.metrics_allow or a request with http.metrics_token\n",
                                     status_code=403, headers={"Cache-Control": "no-store"})
        await gauges.refresh()
        body, ctype = metrics.render()
        return Response(body, media_type=ctype, headers={"Cache-Control": "no-store"})

    return [Route("/metrics", scrape)]
