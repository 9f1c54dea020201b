"""Signing in to the Mail page like a user (SPEC §9): an emailed single-use link by
default, OpenID Connect single sign-on where ``[oidc]`` is configured, and the API-token
form (field ``token``, ``web.pagebase``) beside them.

Routes (mounted before ``web.pages``, whose ``/mail/login`` they extend):

- ``GET /mail/login`` — the page: login address (field ``email``), the OIDC button, the
  token form. ``POST /mail/login`` with ``email`` → always the same answer ("if it is a
  user's address, a link is on its way"), whether or not the address is a user's; with
  ``token`` → the token sign-in of ``PageBase.login``. Both carry the login form's
  double-submit nonce.
- ``GET /mail/login/link/{token}`` shows whom the link signs in, with a button; it never
  signs in (mail scanners prefetch links). ``POST`` (the form carries the token, which is
  the secret) signs in once: 303 to ``/mail`` with the session cookie. A used or expired
  link is 410, an unknown one 404 — each with a way to ask for a new one.
- ``POST /mail/login/oidc`` → 303 to the provider (code + PKCE + state + nonce); the
  answer comes back to ``/oauth/callback`` (``web.oauth_callback``).

A session is issued through ``Sessions.issue`` once the link or the ID token proved who
the user is; nothing else about sessions changes here.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bccd.config import Settings
from bccd.log import get_logger
from bccd.mailboxes import consent, oauth
from bccd.notify.mails import human_duration, when
from bccd.store.models import User
from bccd.web import oidc, signin_links
from bccd.web.mailbox_flow import box, callback_url
from bccd.web.mailbox_pages import with_form_targets
from bccd.web.pagebase import PageBase, templates
from bccd.web.pages import Pages
from bccd.web.session import COOKIE, LOGIN_COOKIE, new_login_nonce
from bccd.web.signin_links import LinkState

if TYPE_CHECKING:
    from bccd.runtime import Services

log = get_logger("bccd.web.signin")
TITLES = {LinkState.PENDING: "Sign in", LinkState.USED: "Link already used",
          LinkState.EXPIRED: "Link expired", LinkState.UNKNOWN: "Link not valid"}
STATUS = {LinkState.PENDING: 200, LinkState.USED: 410, LinkState.EXPIRED: 410,
          LinkState.UNKNOWN: 404}


class Signin(PageBase):
    def __init__(self, services: Services, pages: Pages) -> None:
        super().__init__(services)
        self.pages = pages

    def _oidc_label(self) -> str:
        return oidc.label(self.settings) if self.settings.oidc.enabled else ""

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def _login_page(self, nonce: str, *, status: int = 200, sent: str = "", error: str = "") -> Response:
        resp = self.page("app_login.html", status, title="Sign in", nonce=nonce, error=error,
                         viewer=None, sent=sent, oidc=self._oidc_label(),
                         ttl=human_duration(self.settings.signin.link_ttl))
        if self.settings.oidc.enabled:  # the provider's sign-in page is this form's target
            with_form_targets(resp, [self.settings.oidc.issuer])
        resp.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/mail/login", httponly=True,
                        samesite="strict", secure=self.sessions.secure)
        return resp

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            if self._session(request) is not None:
                return RedirectResponse("/mail", status_code=303)
            return self._login_page(new_login_nonce())
        form = await self._form(request)
        if form is None or "email" not in form:
            return await self.pages.login(request)  # the API-token form
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not self._origin_ok(request) or not nonce or not hmac.compare_digest(
                str(form.get("nonce") or ""), nonce):
            return self._error(403, "Sign-in form expired", "Open the sign-in page again.")
        email = str(form.get("email") or "").strip()[:320]

        def ask() -> bool:
            with self.db.transaction() as s:
                return signin_links.request_link(s, self.settings, email)

        queued = await self.db.run(ask)
        log.info("web_signin_link_requested", sent=queued)
        return self._login_page(nonce, sent=email or "that address")

    async def link(self, request: Request) -> Response:
        token = str(request.path_params["token"])[:200]
        if request.method == "POST":
            form = await self._form(request)
            posted = str(form.get("token") or "") if form is not None else ""
            if not posted or not hmac.compare_digest(posted.encode(), token.encode()):
                return self._error(400, "Nothing was changed", "The form did not match the link.")

            def spend() -> tuple[int, str] | None:
                with self.db.transaction() as s:  # the link is spent with the session made
                    user = signin_links.use(s, token)
                    return (user.id, self.sessions.issue(s, user)) if user else None

            found = await self.db.run(spend)
            if found is not None:
                log.info("web_login", user=found[0], via="link")
                return self.signed_in(found)

        def look() -> signin_links.LinkInfo:
            with self.db.read() as s:
                return signin_links.lookup(s, token)

        info = await self.db.run(look)
        return self.page("app_signin_link.html", STATUS[info.state], title=TITLES[info.state],
                         viewer=None, state=info.state.value, email=info.email, token=token,
                         expires=f"at {when(info.expires_at)}" if info.expires_at else "soon")

    def signed_in(self, found: tuple[int, str]) -> Response:
        """Go to the Mail page with the session ``found`` = (user id, cookie value)."""
        resp = RedirectResponse("/mail", status_code=303)
        resp.set_cookie(COOKIE, found[1], **self.sessions.cookie_kwargs())  # type: ignore[arg-type]
        resp.delete_cookie(LOGIN_COOKIE, path="/mail/login")
        return resp

    async def oidc_start(self, request: Request) -> Response:
        if not self.settings.oidc.enabled:
            return self._error(404, "Not found", "Single sign-on is not set up here.")
        form = await self._form(request)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if form is None or not self._origin_ok(request) or not nonce or not hmac.compare_digest(
                str(form.get("nonce") or ""), nonce):
            return self._error(403, "Sign-in form expired", "Open the sign-in page again.")
        try:
            p = await asyncio.to_thread(oidc.provider, self.settings)
        except oidc.OidcFailed as exc:
            return self._error(502, "Single sign-on unavailable", str(exc))

        def begin() -> consent.Request:
            with self.db.transaction() as s:
                return consent.begin(s, box(self.services), purpose="signin", provider="oidc")

        req = await self.db.run(begin)
        url = oauth.authorization_url(p, redirect_uri=callback_url(self.services), state=req.state,
                                      code_verifier=req.code_verifier, nonce=req.nonce)
        return RedirectResponse(url, status_code=303)

    async def finish_oidc(self, c: consent.Consent, code: str) -> Response:
        try:
            p = await asyncio.to_thread(oidc.provider, self.settings)
            token = await asyncio.to_thread(oauth.exchange, p, redirect_uri=callback_url(self.services),
                                            code=code, code_verifier=c.code_verifier)
            email = await asyncio.to_thread(oidc.verified_email, self.settings, token, c.nonce)
        except (oidc.OidcFailed, oauth.Refused, oauth.Unavailable) as exc:
            log.info("web_oidc_failed", reason=str(exc))
            return self._error(403, "Not signed in", str(exc))

        def find() -> tuple[int, str] | None:
            with self.db.transaction() as s:
                user = s.scalar(select(User).where(func.lower(User.email) == email.lower()))
                if user is None or user.disabled:
                    return None
                return user.id, self.sessions.issue(s, user)

        found = await self.db.run(find)
        if found is None:
            log.info("web_oidc_no_user", email=email)
            return self._error(403, "Not signed in", f"No Smart Bcc user signs in as {email}. "
                               "Ask your administrator to add you.")
        log.info("web_login", user=found[0], via="oidc")
        return self.signed_in(found)


def routes(services: Services) -> list[BaseRoute]:
    for name in ("app_login.html", "app_signin_link.html"):
        templates.get_template(name)
    signin = Signin(services, Pages(services))
    return [
        Route("/mail/login", signin.login, methods=["GET", "POST"]),
        Route("/mail/login/link/{token}", signin.link, methods=["GET", "POST"]),
        Route("/mail/login/oidc", signin.oidc_start, methods=["POST"]),
    ]
