"""The ASGI application (Starlette), served by uvicorn on the same event loop as SMTP.

``create_app(services)`` → Starlette app. Routes come from the modules that own them
(``bccd.web.routes.FACTORIES``); this module holds only the frame: /healthz, the answer
for paths no route serves (problem details under ``/api/``), and the request body limit
in front of everything (``web.limits``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from bccd.web.api.core import problem
from bccd.web.limits import BodyLimit, BodyTable
from bccd.web.routes import FACTORIES

if TYPE_CHECKING:
    from bccd.runtime import Services


async def not_found(request: Request, exc: Exception) -> Response:
    """404/405 outside every route: problem details under ``/api/``, plain text elsewhere."""
    status = getattr(exc, "status_code", 404)
    if request.url.path.startswith("/api/"):
        return problem(status, f"no such endpoint: {request.method} {request.url.path}")
    return PlainTextResponse("Not found" if status == 404 else "Method not allowed",
                             status_code=status, headers=getattr(exc, "headers", None))


def create_app(services: Services) -> ASGIApp:
    async def healthz(request: Request) -> Response:
        def ping() -> None:
            with services.db.read() as s:
                s.execute(text("SELECT 1"))

        checks: dict[str, str] = {}
        try:
            await services.db.run(ping)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["smtp"] = "ok" if services.smtp_listening() else "down"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks},
                            status_code=200 if ok else 503)

    routes: list[BaseRoute] = [Route("/healthz", healthz)]
    for factory in FACTORIES:
        routes.extend(factory(services))
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.services = services
    return BodyLimit(app, BodyTable.from_settings(services.settings))
