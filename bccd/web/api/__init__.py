"""The JSON API under ``/api/v1`` (SPEC §9), described by ``/api/v1/openapi.json``.

``routes(services)`` (a route factory, see ``bccd.web.routes``) mounts the FastAPI
application built by ``core.create_api``: ``me`` (the caller's account), ``threads``
(mail the caller can see), ``admin`` (CRM upserts, users, webhook deliveries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Mount

if TYPE_CHECKING:
    from bccd.runtime import Services


def routes(services: Services) -> list[BaseRoute]:
    from bccd.web.api.core import create_api

    return [Mount("/api/v1", app=create_api(services))]
