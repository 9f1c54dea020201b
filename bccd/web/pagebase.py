"""The frame of the Mail page (``web.pages``): templates, security headers, sessions and
CSRF-checked forms, sign-in and sign-out.

``PageBase`` gives every page handler ``read(request, work)`` (``work(session, user)`` in a
read session for the signed-in user, through ``Database.run``; ``SignedOut`` when the
session is missing, signed out, expired, of a disabled user or of a replaced API token —
sessions live in the database, ``web.session``) and
``change(request, work)`` (a POST: the Origin must be ours or absent, the form must carry
the session's CSRF token; ``work(session, user, form)`` in one transaction; a
``bccd.errors`` failure becomes the page's error). Responses are never cached, cannot be
framed, send no referrer to other sites (``same-origin``: with ``no-referrer`` browsers
post ``Origin: null``, which the check must refuse as sandboxed frames send it too) and
carry ``csp()``: our stylesheet, inline styles, images from ``data:`` (plus ``http(s):``
where the reader asked for remote images), scripts only from bccd itself (``script-src
'self'``: the compose editor and its helpers under ``/mail/static``; no inline script,
no CDN) and requests only to bccd (``connect-src 'self'``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bccd import accounts
from bccd.errors import BccdError
from bccd.log import get_logger
from bccd.store.grants import WebSession
from bccd.store.models import User
from bccd.web.session import COOKIE, LOGIN_COOKIE, SessionData, Sessions, new_login_nonce

if TYPE_CHECKING:
    from bccd.runtime import Services

log = get_logger("bccd.web.pages")

HERE = Path(__file__).resolve().parent
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                        undefined=StrictUndefined, auto_reload=False)
PAGES = ("app_login.html", "app_threads.html", "app_thread.html", "app_settings.html",
         "app_error.html")
MAX_FORM = 512 * 1024  # a signature with a small image (the compose form has its own limit)


def _when(value: str | None) -> str:
    if not value:
        return ""
    try:
        return dt.datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


def _meeting_time(value: str | None) -> str:
    """A meeting's time in its own offset, as the organizer wrote it (SPEC §5.13)."""
    if not value:
        return ""
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    return at.strftime("%Y-%m-%d %H:%M") + (f" UTC{at.strftime('%z')[:3]}:{at.strftime('%z')[3:]}"
                                            if at.utcoffset() else " UTC")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GB"


def _compose_to(address: str) -> str:
    return "/mail/compose?" + urlencode({"to": address})


def _mailto(address: str, bcc: str) -> str:
    """``mailto:`` with the user's Smart Bcc address in ``bcc`` (SPEC §12 email links)."""
    return f"mailto:{quote(address, safe='@+')}?" + urlencode({"bcc": bcc}, quote_via=quote,
                                                                  safe="@+")


templates.filters["when"] = _when
templates.filters["size"] = _size
templates.filters["compose_to"] = _compose_to
templates.filters["mailto"] = _mailto
templates.filters["meeting_time"] = _meeting_time


def csp(*, remote_images: bool = False) -> str:
    img = "'self' data:" + (" https: http:" if remote_images else "")
    return ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src " + img + "; "
            "script-src 'self'; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; frame-src 'self'")


def _headers(*, remote_images: bool = False) -> dict[str, str]:
    # same-origin, not no-referrer: with no-referrer browsers send ``Origin: null`` on our
    # own form posts, which the Origin check must refuse (sandboxed frames send it too)
    return {"Cache-Control": "no-store", "Referrer-Policy": "same-origin",
            "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": csp(remote_images=remote_images)}


def srcdoc(html: str, *, remote_images: bool, origin: str = "") -> str:
    """The document shown in a message's sandboxed iframe; ``origin`` (the page's) lets it
    load the message's inline images from ``/mail/inline/…`` (a sandboxed document has no
    origin of its own for ``'self'`` to name)."""
    img = "data:" + (f" {origin}/mail/inline/" if origin else "") \
        + (" https: http:" if remote_images else "")
    return ("<!doctype html><html><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            f"img-src {img}; style-src 'unsafe-inline'\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            "<style>body{margin:0;padding:4px 2px;font:15px/1.5 -apple-system,'Segoe UI',"
            "Roboto,Helvetica,Arial,sans-serif;color:#1f2328;overflow-wrap:anywhere}"
            "img{max-width:100%;height:auto}table{max-width:100%}</style></head><body>"
            f"{html}</body></html>")


def frame_height(html: str) -> int:
    return max(160, min(1400, 120 + len(html) // 6))


class SignedOut(Exception):
    """No valid session: the caller is sent to the sign-in form."""


@dataclass(frozen=True, slots=True)
class Viewer:
    id: int
    email: str
    name: str
    is_admin: bool
    csrf: str
    session_id: int = 0
    email_links: str = "app"     # app | default-client (SPEC §12)
    bcc_address: str = ""


class PageBase:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.db = services.db
        self.sessions = Sessions(services.settings)
        public = urlsplit(services.settings.http.base_url)
        self.public_origin = f"{public.scheme}://{public.netloc}".lower()

    # -------------------------------------------------------------- plumbing
    def page(self, name: str, status: int = 200, *, remote_images: bool = False,
             **context: Any) -> Response:
        html = templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=_headers(remote_images=remote_images))

    def _session(self, request: Request) -> SessionData | None:
        return self.sessions.read(request.cookies.get(COOKIE))

    def _signed_in(self, s: Session, data: SessionData | None) -> tuple[WebSession, User]:
        found = self.sessions.user(s, data)
        if found is None:
            raise SignedOut()
        return found

    def _user(self, s: Session, data: SessionData | None) -> User:
        return self._signed_in(s, data)[1]

    def _viewer(self, user: User, data: SessionData, ws: WebSession | None = None) -> Viewer:
        return Viewer(user.id, user.email, user.name, user.is_admin, self.sessions.csrf(data),
                      ws.id if ws is not None else 0, user.email_links,
                      accounts.bcc_address(user, self.services.settings.smtp.bcc_domain))

    def _origin_ok(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            return True
        own = f"{request.url.scheme}://{request.url.netloc}".lower()
        return origin.lower() in (own, self.public_origin)

    async def _form(self, request: Request) -> FormData | None:
        length = request.headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > MAX_FORM):
            return None
        try:
            return await request.form(max_files=0, max_fields=50)
        except Exception:  # malformed bodies are refused below like a missing token
            return None

    def _to_login(self) -> Response:
        resp = RedirectResponse("/mail/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    def _error(self, status: int, title: str, detail: str, viewer: Viewer | None = None) -> Response:
        return self.page("app_error.html", status, title=title, detail=detail, viewer=viewer)

    async def read(self, request: Request, work: Callable[..., Any], *,
                   with_viewer: bool = False) -> Any:
        """Run ``work(session, user)`` (``work(session, user, viewer)`` with
        ``with_viewer``) in a read session for the signed-in user."""
        data = self._session(request)

        def run() -> Any:
            with self.db.read() as s:
                ws, user = self._signed_in(s, data)
                assert data is not None
                viewer = self._viewer(user, data, ws)
                return viewer, (work(s, user, viewer) if with_viewer else work(s, user))

        return await self.db.run(run)

    async def change(self, request: Request, work: Callable[[Any, User, FormData], Any],
                     on_error: Callable[[Viewer, BccdError], Awaitable[Response]] | None = None
                     ) -> Response | tuple[Viewer, Any]:
        """A CSRF-checked POST: ``work(session, user, form)`` in one transaction."""
        data = self._session(request)
        if data is None:
            return self._to_login()
        form = await self._form(request)
        if not self._origin_ok(request) or form is None or not self.sessions.csrf_ok(
                data, str(form.get("csrf") or "")):
            return self._error(403, "Not allowed", "The form was stale or came from another "
                               "site, so nothing was changed. Reload the page and try again.")

        def run() -> tuple[Viewer, Any]:
            with self.db.transaction() as s:
                user = self._user(s, data)
                return self._viewer(user, data), work(s, user, form)

        try:
            return await self.db.run(run)
        except SignedOut:
            return self._to_login()
        except BccdError as exc:
            viewer = await self.db.run(self._viewer_only, data)
            if on_error is not None and viewer is not None:
                return await on_error(viewer, exc)
            status = exc.status if exc.status in (400, 403, 404, 409, 422, 429) else 400
            return self._error(status, "Nothing was changed", str(exc), viewer)

    def _viewer_only(self, data: SessionData) -> Viewer | None:
        with self.db.read() as s:
            try:
                return self._viewer(self._user(s, data), data)
            except SignedOut:
                return None

    # -------------------------------------------------------------- sign-in
    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            if self._session(request) is not None:
                return RedirectResponse("/mail", status_code=303)
            nonce = new_login_nonce()
            resp = self.page("app_login.html", title="Sign in", nonce=nonce, error="", viewer=None)
            resp.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/mail/login",
                            httponly=True, samesite="strict", secure=self.sessions.secure)
            return resp
        form = await self._form(request)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if (form is None or not self._origin_ok(request) or not nonce
                or str(form.get("nonce") or "") != nonce):
            return self._error(403, "Sign-in form expired",
                               "Open the sign-in page again and paste your API token.")
        token = str(form.get("token") or "").strip()

        def check() -> tuple[int, str] | None:
            with self.db.transaction() as s:
                user = accounts.user_by_api_token(s, token) if 0 < len(token) <= 512 else None
                return (user.id, self.sessions.issue(s, user)) if user is not None else None

        found = await self.db.run(check)
        if found is None:
            log.info("web_login_failed", client=request.client.host if request.client else "")
            resp = self.page("app_login.html", 401, title="Sign in", nonce=nonce, viewer=None,
                             error="That API token is not valid (or its user is disabled).")
            return resp
        log.info("web_login", user=found[0])
        resp = RedirectResponse("/mail", status_code=303)
        resp.set_cookie(COOKIE, found[1], **self.sessions.cookie_kwargs())  # type: ignore[arg-type]
        resp.delete_cookie(LOGIN_COOKIE, path="/mail/login")
        return resp

    async def logout(self, request: Request) -> Response:
        """Sign out: the session's row is deleted, so its cookie is worthless everywhere."""
        data = self._session(request)
        out = await self.change(request, lambda s, u, f: self.sessions.end(s, data)
                                if data is not None else None)
        if isinstance(out, Response) and out.status_code != 303:
            return out
        return self._to_login()

    # -------------------------------------------------------------- conversations
