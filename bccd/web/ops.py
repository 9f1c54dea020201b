"""``/metrics`` (SPEC §9): Prometheus text format, every name prefixed ``bccd_``.

The gauges read from the database (IMAP accounts by state, outbox depth) are refreshed
by ``bccd.metrics.collect_db`` through ``Database.run`` on each scrape, so the event loop
never blocks; counters and the ingest latency histogram are live in the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bccd import metrics

if TYPE_CHECKING:
    from bccd.runtime import Services


def routes(services: Services) -> list[BaseRoute]:
    async def scrape(request: Request) -> Response:
        await services.db.run(metrics.collect_db, services.db)
        body, ctype = metrics.render()
        return Response(body, media_type=ctype, headers={"Cache-Control": "no-store"})

    return [Route("/metrics", scrape)]
