"""The JSON API under ``/api/v1`` (SPEC §9), described by ``/api/v1/openapi.json``.

``routes(services)`` (a route factory, see ``bccd.web.routes``) mounts the FastAPI
application ``create_api`` builds from the routers: ``me`` (the caller's account and
settings), ``threads`` (mail the caller can see), ``messages`` and ``templates`` (writing
mail), ``mailboxes`` (the caller's mailboxes), ``admin`` (CRM upserts, users, webhook
deliveries). ``core`` is what they share: authentication, problem documents, the frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount

from bccd.web.api import admin, core, mailboxes, me, messages, templates, threads

if TYPE_CHECKING:
    from bccd.runtime import Services


def create_api(services: Services) -> FastAPI:
    api = FastAPI(
        title="bccd",
        version="1",
        summary="Smart Bcc inbound mail server for CRMs",
        description="Threads, messages and settings for users (their API token); CRM "
                    "entities, users and webhook deliveries for admins (an admin's token). "
                    "Errors are RFC 9457 problem details.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        responses=core.ERRORS,
    )
    api.state.services = services
    for router in (me.router, threads.router, messages.router, templates.router,
                   admin.router, mailboxes.router):
        api.include_router(router)
    core.install(api)
    return api


def routes(services: Services) -> list[BaseRoute]:
    return [Mount("/api/v1", app=create_api(services))]
