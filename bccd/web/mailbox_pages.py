"""The Mail page's mailbox section (SPEC §7): connect, see, change and remove one's own
mailboxes. Plain forms (no JavaScript); CSRF and sessions are ``PageBase``'s; the steps
are ``web.mailbox_flow``'s, shared with the API.

- ``GET /mail/settings/mailboxes/new`` — the provider list; ``?provider=ID`` — its form:
  "Sign in with …" for OAuth presets (when ``[oauth.<name>]`` is configured), an email
  and (app) password form otherwise, with the provider's notes and documentation page.
  Exchange ActiveSync is listed to say it is not IMAP.
- ``POST /mail/settings/mailboxes/new`` — log in, list folders, save (or the server's
  reason and nothing saved); ``POST /mail/settings/mailboxes/oauth/{provider}`` — to the
  provider's consent page (field ``mailbox``: sign in again to that mailbox).
- ``GET /mail/settings/mailboxes/{id}`` — its status and settings, with the folders the
  server lists now to choose from; ``POST`` changes them; ``POST …/remove`` removes it
  (field ``delete_mail=yes`` also deletes mail that came only from it).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bccd.errors import BccdError, Invalid
from bccd.mailboxes import accounts, connect, oauth, presets
from bccd.mailboxes.control import Folder, LoginFailed
from bccd.store.models import User, utcnow
from bccd.web import mailbox_flow as flow
from bccd.web.pagebase import PageBase, SignedOut, Viewer, templates

if TYPE_CHECKING:
    from bccd.runtime import Services

PAGES = ("app_mailbox_new.html", "app_mailbox.html")
DONE = {"connected": "Mailbox connected.", "saved": "Mailbox settings saved."}


def _ago(iso: str | None, now: dt.datetime) -> str:
    if not iso:
        return ""
    secs = max(0, int((now - dt.datetime.fromisoformat(iso)).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= size:
            n = secs // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def status(m: dict[str, Any], now: dt.datetime | None = None) -> dict[str, str]:
    """What a person reads about a mailbox: a state word and one line."""
    now = now or utcnow()
    synced = f"{m['messages_synced']:,} message{'s' if m['messages_synced'] != 1 else ''} synced"
    prog = m["progress"]
    if m["state"] == "disabled":
        return {"word": "Stopped", "line": m["reason"] or "its user is disabled"}
    if m["needs_signin"]:
        return {"word": "Sign in again", "line": f"{m['reason']} — sign in again to resume syncing."}
    if m["state"] == "paused":
        nxt = m["next_attempt_at"]
        at = dt.datetime.fromisoformat(nxt).strftime("%H:%M UTC") if nxt else "soon"
        return {"word": "Paused", "line": f"{m['reason']} · next try at {at} · {synced}"}
    if not m["initial_sync_done_at"]:
        if prog["total"]:
            return {"word": "Syncing", "line": f"Initial sync: {prog['done']:,} of "
                    f"{prog['total']:,} messages · {synced}"}
        return {"word": "Starting", "line": "The initial sync starts in a moment."}
    return {"word": "Active", "line": f"Last sync {_ago(m['last_sync_at'], now)} · {synced}"}


def listing(s: Any, user: User) -> list[dict[str, Any]]:
    """The settings page's mailbox rows (``app_settings.html`` includes ``_mailboxes.html``)."""
    rows = accounts.list_accounts(s, user.email)
    return [{**m, "status": status(m)} for m in rows]


def with_form_targets(resp: Response, urls: list[str]) -> Response:
    """Let this page's forms lead to the providers' consent pages: a form POST answered
    with a redirect elsewhere is refused by ``form-action 'self'`` alone."""
    origins = sorted({f"{u.scheme}://{u.netloc}" for u in map(urlsplit, urls) if u.netloc})
    if origins:
        policy = resp.headers["Content-Security-Policy"]
        resp.headers["Content-Security-Policy"] = policy.replace(
            "form-action 'self'", "form-action 'self' " + " ".join(origins))
    return resp


class MailboxPages(PageBase):
    def page(self, name: str, status: int = 200, *, remote_images: bool = False,
             **context: Any) -> Response:
        resp = super().page(name, status, remote_images=remote_images, **context)
        return with_form_targets(resp, [p.authorize_url for p in oauth.configured(self.services.settings)])

    async def _post(self, request: Request) -> tuple[Viewer, FormData] | Response:
        data = self._session(request)
        if data is None:
            return self._to_login()
        form = await self._form(request)
        if not self._origin_ok(request) or form is None or not self.sessions.csrf_ok(
                data, str(form.get("csrf") or "")):
            return self._error(403, "Not allowed", "The form was stale or came from another "
                               "site, so nothing was changed. Reload the page and try again.")
        viewer = await self.db.run(self._viewer_only, data)
        if viewer is None:
            return self._to_login()
        return viewer, form

    async def new(self, request: Request, *, error: str = "", status: int = 200,
                  form: FormData | None = None) -> Response:
        try:
            viewer, _ = await self.read(request, lambda s, u: None)
        except SignedOut:
            return self._to_login()
        settings = self.services.settings
        configured = {p.name: p.label for p in oauth.configured(settings)}
        chosen = request.query_params.get("provider") or (str(form.get("provider")) if form else "")
        preset = next((p for p in presets.presets() if p.id == chosen), None)
        return self.page("app_mailbox_new.html", status, title="Add a mailbox", viewer=viewer,
                         presets=presets.presets(), preset=preset, configured=configured,
                         error=error, values=dict(form or {}), redirect_uri=flow.callback_url(self.services))

    async def create(self, request: Request) -> Response:
        checked = await self._post(request)
        if isinstance(checked, Response):
            return checked
        viewer, f = checked

        def num(name: str) -> int | None:
            v = str(f.get(name) or "").strip()
            return int(v) if v.isdigit() else None

        pf = connect.PasswordForm(
            preset=str(f.get("provider") or ""), email=str(f.get("email") or "").strip(),
            password=str(f.get("password") or ""), username=str(f.get("username") or "").strip(),
            host=str(f.get("host") or "").strip(), port=num("port"),
            smtp_host=str(f.get("smtp_host") or "").strip(), smtp_port=num("smtp_port"),
            scope=str(f.get("scope") or "all"), on_archive=str(f.get("on_archive") or "none"))
        try:
            shown, _ = await flow.connect_password(self.services, viewer.id, pf)
        except LoginFailed as exc:
            return await self.new(request, error=f"Nothing was saved: {exc}", status=422, form=f)
        except BccdError as exc:
            return await self.new(request, error=str(exc), status=422, form=f)
        return RedirectResponse(f"/mail/settings/mailboxes/{shown['id']}?done=connected", status_code=303)

    async def consent(self, request: Request) -> Response:
        checked = await self._post(request)
        if isinstance(checked, Response):
            return checked
        viewer, f = checked
        raw = str(f.get("mailbox") or "")
        try:
            url = await flow.start_consent(self.services, viewer.id, request.path_params["provider"],
                                           int(raw) if raw.isdigit() else None)
        except BccdError as exc:
            return self._error(404 if exc.status == 404 else 400, "Not connected", str(exc), viewer)
        return RedirectResponse(url, status_code=303)

    async def show(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        try:
            account_id = int(request.path_params["account_id"])
            viewer, m = await self.read(request, lambda s, u: accounts.show_account(
                s, connect.owned(s, u, account_id)))
        except SignedOut:
            return self._to_login()
        except (ValueError, BccdError):
            return self._error(404, "Not found", "There is no such mailbox.")
        found: list[Folder] = []
        folder_error = ""
        try:
            found = await flow.folders(self.services, viewer.id, account_id)
        except LoginFailed as exc:
            folder_error = str(exc)
        chosen = [] if m["folders"] == "all" else list(m["folders"])
        return self.page("app_mailbox.html", status, title=m["username"], viewer=viewer, m=m,
                         st=status_of(m), folders=[f for f in found if f.selectable],
                         chosen=chosen, folder_error=folder_error, error=error,
                         notice=DONE.get(request.query_params.get("done") or "", ""),
                         signin_label=_label(self.services, m["oauth_provider"]))

    async def save(self, request: Request) -> Response:
        checked = await self._post(request)
        if isinstance(checked, Response):
            return checked
        viewer, f = checked
        account_id = int(request.path_params["account_id"])
        changes: dict[str, Any] = {
            "folders": [] if f.get("all_folders") == "yes" else [str(x) for x in f.getlist("folders")],
            "scope": str(f.get("scope") or "all"), "on_archive": str(f.get("on_archive") or "none")}
        try:
            host = str(f.get("smtp_host") or "").strip()
            port = str(f.get("smtp_port") or "").strip()
            sec = str(f.get("smtp_security") or "") or None
            changes["smtp"] = accounts.submission(host or None, int(port) if port.isdigit() and host
                                                  else None, sec if host else None)
            if changes["folders"] == [] and f.get("all_folders") != "yes":
                raise Invalid("choose at least one folder, or all mail")
            await flow.update(self.services, viewer.id, account_id, changes)
        except (BccdError, ValueError) as exc:
            return await self.show(request, error=f"Nothing was changed: {exc}", status=422)
        return RedirectResponse(f"/mail/settings/mailboxes/{account_id}?done=saved", status_code=303)

    async def remove(self, request: Request) -> Response:
        checked = await self._post(request)
        if isinstance(checked, Response):
            return checked
        viewer, f = checked
        try:
            out = await flow.remove(self.services, viewer.id, int(request.path_params["account_id"]),
                                    delete_mail=f.get("delete_mail") == "yes")
        except (BccdError, ValueError):
            return self._error(404, "Not found", "There is no such mailbox.", viewer)
        done = "mailbox_removed_mail" if out["messages_deleted"] else "mailbox_removed"
        return RedirectResponse(f"/mail/settings?done={done}", status_code=303)


def status_of(m: dict[str, Any]) -> dict[str, str]:
    return status(m)


def _label(services: Services, name: str | None) -> str:
    if not name:
        return ""
    try:
        return oauth.provider(services.settings, name).label
    except BccdError:
        return ""


def routes(services: Services) -> list[BaseRoute]:
    for name in PAGES:
        templates.get_template(name)
    p = MailboxPages(services)
    return [
        Route("/mail/settings/mailboxes/new", p.new),
        Route("/mail/settings/mailboxes/new", p.create, methods=["POST"]),
        Route("/mail/settings/mailboxes/oauth/{provider}", p.consent, methods=["POST"]),
        Route("/mail/settings/mailboxes/{account_id:int}", p.show),
        Route("/mail/settings/mailboxes/{account_id:int}", p.save, methods=["POST"]),
        Route("/mail/settings/mailboxes/{account_id:int}/remove", p.remove, methods=["POST"]),
    ]
