"""The HTTP routes bccd serves beside ``/healthz``, gathered in one place.

``register(services)`` (called by ``bccd.service``) appends each route factory in
``FACTORIES`` to ``services.http_routes``; a factory takes the services and returns
Starlette routes. A new page or API module means one more line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bccd.web import confirm

if TYPE_CHECKING:
    from bccd.service import RouteFactory, Services

FACTORIES: tuple[RouteFactory, ...] = (confirm.routes,)


def register(services: Services) -> None:
    services.http_routes.extend(FACTORIES)
