"""``GET /oauth/callback`` — where every OAuth 2.0 / OpenID Connect provider sends the
browser back (SPEC §7, §9): ``<http.public_url>/oauth/callback`` is the one redirect URL
an operator registers.

The ``state`` is used up first (``mailboxes.consent.consume``): an unknown, mismatched,
already-used or expired state answers ``400`` and nothing is saved — so a replayed
callback (the same code again) is refused before the code reaches the provider. Then:

- ``error=…`` from the provider (``access_denied`` when the user declined) → ``400`` with
  what the provider said; nothing saved;
- purpose ``mailbox`` → the code for tokens, the account's address, the mailbox saved
  with its refresh token encrypted, its first login tried (``web.mailbox_flow``), then
  ``303`` to the mailbox on the settings page (a refused code → ``400``, a provider that
  cannot be reached → ``502``);
- purpose ``signin`` → the ID token checked and the user signed in (``web.signin``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bccd.errors import BccdError
from bccd.log import get_logger
from bccd.mailboxes import consent, oauth
from bccd.web import mailbox_flow as flow
from bccd.web.pagebase import PageBase
from bccd.web.pages import Pages
from bccd.web.signin import Signin

if TYPE_CHECKING:
    from bccd.runtime import Services

log = get_logger("bccd.web.oauth")


class Callback(PageBase):
    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.signin = Signin(services, Pages(services))

    def _fail(self, status: int, detail: str) -> Response:
        return self.page("app_error.html", status, title="Nothing was saved", detail=detail,
                         viewer=None)

    async def callback(self, request: Request) -> Response:
        q = request.query_params
        state = (q.get("state") or "")[:200]

        def use() -> consent.Consent:
            with self.db.transaction() as s:
                return consent.consume(s, flow.box(self.services), state)

        try:
            c = await self.db.run(use)
        except consent.BadState as exc:
            log.info("oauth_callback_bad_state", reason=str(exc))
            return self._fail(400, str(exc))
        label = c.provider
        if c.purpose == "mailbox":
            try:
                label = oauth.provider(self.services.settings, c.provider).label
            except BccdError:
                return self._fail(400, f"the provider {c.provider!r} is no longer configured")
        if q.get("error"):
            error = q.get("error", "")[:80]
            said = (q.get("error_description") or "")[:200]
            log.info("oauth_callback_error", provider=c.provider, error=error)
            if error == "access_denied":
                return self._fail(400, f"Access was not allowed at {label}, so nothing was "
                                  "connected. Start again and choose Allow to connect the mailbox.")
            return self._fail(400, f"{label} answered {error}{': ' + said if said else ''}.")
        code = q.get("code") or ""
        if not code or len(code) > 4096:
            return self._fail(400, f"{label} sent no authorization code.")
        if c.purpose == "signin":
            return await self.signin.finish_oidc(c, code)
        try:
            account_id = await flow.finish_consent(self.services, c, code)
        except oauth.Unavailable as exc:
            return self._fail(502, f"{label} could not be reached: {exc}")
        except oauth.Refused as exc:
            return self._fail(400, f"{label} refused: {exc}")
        except BccdError as exc:
            return self._fail(exc.status if exc.status in (400, 404, 409, 422) else 400, str(exc))
        return RedirectResponse(f"/mail/settings/mailboxes/{account_id}?done=connected",
                                status_code=303)


def routes(services: Services) -> list[BaseRoute]:
    return [Route("/oauth/callback", Callback(services).callback)]
