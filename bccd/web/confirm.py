"""The confirmation page (SPEC §6): ``/confirm/<token>``.

- ``GET`` (and ``HEAD``) only *shows* what the link is for, with a Confirm button; it never
  changes anything, so mail scanners that prefetch links do not confirm.
- ``POST`` (an ``application/x-www-form-urlencoded`` form carrying the token itself, which
  is the secret — so a cross-site form cannot forge it) confirms, once: 200 with the
  confirmed page, or the page below for a token that cannot confirm.
- A used token → 410 "already confirmed"; an expired one → 410 with how to get a new
  link; an unknown one (mistyped, replaced, removed) → 404; a POST whose form token does
  not match the link → 400. Nothing is changed in any of those cases.

Pages are Jinja2 templates (autoescaped) from ``bccd/web/templates``. Responses are not
cached, send no referrer (the token is in the URL), cannot be framed (a hidden Confirm
button must not be clickjacked) and load nothing from elsewhere. Database work goes
through ``Database.run``; the event loop never blocks.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from bccd.confirm import flow
from bccd.confirm.flow import TokenInfo, TokenState
from bccd.log import get_logger
from bccd.notify import mails

if TYPE_CHECKING:
    from bccd.runtime import Services

log = get_logger("bccd.web.confirm")

templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True, undefined=StrictUndefined, auto_reload=False,
)
PAGES = ("confirm.html", "confirm_done.html", "confirm_problem.html")

MAX_FORM = 4096
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}
_STATUS = {TokenState.PENDING: 200, TokenState.CONFIRMED: 200, TokenState.USED: 410,
           TokenState.EXPIRED: 410, TokenState.UNKNOWN: 404}
_TITLES = {TokenState.USED: "Already confirmed", TokenState.EXPIRED: "Link expired",
           TokenState.UNKNOWN: "Link not valid"}


def routes(services: Services) -> list[BaseRoute]:
    for name in PAGES:  # compiled now, so no request reads a template file on the loop
        templates.get_template(name)
    return [Route("/confirm/{token}", confirm_page, methods=["GET", "POST"])]


def _page(name: str, status: int, **context: Any) -> Response:
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _render(info: TokenInfo, token: str) -> Response:
    held_text = mails.copies(info.held)
    if info.state is TokenState.PENDING:
        expires = f"on {mails.when(info.expires_at)}" if info.expires_at else "soon"
        return _page("confirm.html", 200, title=f"Confirm {info.address}", address=info.address,
                     user_name=info.user_name, user_email=info.user_email, company=info.company,
                     held=info.held, held_text=held_text, token=token, expires=expires)
    if info.state is TokenState.CONFIRMED:
        return _page("confirm_done.html", 200, title=f"{info.address} confirmed",
                     address=info.address, user_name=info.user_name,
                     user_email=info.user_email, held=info.held, held_text=held_text)
    return _page("confirm_problem.html", _STATUS[info.state], title=_TITLES[info.state],
                 state=info.state.value, address=info.address, user_name=info.user_name,
                 user_email=info.user_email)


async def _form_token(request: Request) -> str | None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10).get("token")
    except ValueError:  # too many fields
        return None
    return values[0] if values and len(values) == 1 else None


async def confirm_page(request: Request) -> Response:
    services: Services = request.app.state.services
    db = services.db
    token: str = request.path_params["token"]

    if request.method != "POST":
        def look() -> TokenInfo:
            with db.read() as s:
                return flow.lookup(s, token)

        return _render(await db.run(look), token)

    posted = await _form_token(request)
    if posted is None or not hmac.compare_digest(posted.encode(), token.encode()):
        return _page("confirm_problem.html", 400, title="Nothing was changed",
                     state="bad_request", address="", user_name="", user_email="")

    def confirm() -> TokenInfo:
        with db.transaction() as s:
            return flow.confirm(s, token)

    info = await db.run(confirm)
    if info.state is TokenState.CONFIRMED:
        log.info("alternate_confirmed", address=info.address, user=info.user_email,
                 via="web", quarantined=info.held)
    return _render(info, token)
