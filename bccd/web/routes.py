"""The HTTP routes bccd serves beside ``/healthz``, gathered in one place.

``register(services)`` (called by ``bccd.service``) appends each route factory in
``FACTORIES`` to ``services.http_routes``; a factory takes the services and returns
Starlette routes. A new page or API module means one more line here.

Because the HTTP front is what exposes them, ``register`` also wires, once per
``bccd serve`` process: webhook events for this database when ``webhooks.url`` is set
(``notify.webhooks.attach``) and the ingest latency metric (``metrics.instrument``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bccd import metrics
from bccd.notify import webhooks
from bccd.web import api, confirm, ops, pages

if TYPE_CHECKING:
    from bccd.service import RouteFactory, Services

FACTORIES: tuple[RouteFactory, ...] = (confirm.routes, api.routes, pages.routes, ops.routes)


def register(services: Services) -> None:
    services.http_routes.extend(FACTORIES)
    webhooks.attach(services.db, services.settings)
    metrics.instrument(services.pipeline)
