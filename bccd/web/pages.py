"""The Mail page (SPEC §9): server-rendered HTML for a signed-in user; it works without
JavaScript (the compose form and the signature editor get better with it:
``web.compose_pages``, ``static/compose.js``).

Routes (all under ``/mail``):

- ``GET/POST /mail/login`` — the API-token sign-in form; ``POST /mail/logout``;
- ``GET /mail`` — conversations the user can see (search ``q``, filters ``person``,
  ``organization``, ``deal``, ``lead``, ``project`` — that entity's timeline, where a
  message several users filed is shown once, SPEC §5.14 —, ``link_state``, paging
  ``offset``), with linked-entity badges, and the count of conversations that need
  linking (SPEC §5.12); ``category`` (SPEC §5.10; ``hide_automated=1`` keeps ``person``
  and ``internal``: the "Hide automated" box); ``?link_state=needs_choice`` is the "Needs
  linking" list, each conversation with its suggestions as one-click buttons (a POST to
  ``…/link`` with ``back=needs`` returns to the list);
- ``GET /mail/threads/{id}`` — one conversation: links and suggestions with link/unlink
  controls (a person whose address bounced is marked), its meeting (SPEC §5.13), each
  message's category when it is not ``person``, each message's sanitized HTML in a
  sandboxed ``<iframe srcdoc>`` (no scripts, no same-origin, remote images blocked until
  ``?images=1``), attachments and the raw message as downloads; ``POST …/link``,
  ``…/unlink``, ``…/visibility``, ``…/archive``, ``…/delete``;
- ``GET /mail/attachments/{id}``, ``GET /mail/messages/{id}/raw`` — downloads;
- ``GET /mail/inline/{session}/{attachment}/{mac}`` — an inline image of a shown message.

Inline images and the size of a page (SPEC §9): a message's ``cid:`` images are not
embedded in the page; each points at ``/mail/inline/…`` — one address per part, however
often the HTML names it — which serves the part to the session that was shown it (the
sandboxed message frame sends no cookie, so the address carries the session's id and a
MAC; it stops working when the session ends, and the attachment's visibility is checked
again on each request). The thread read model hides inline parts past its per-page
allowance. And whatever the sanitizer makes of hostile markup, a message's frame may not
exceed ``FRAME_FACTOR`` times the message's raw size: past it the page shows a notice and
the download of the original instead, so a page stays within 10× the mail it shows.
- ``GET/POST /mail/settings`` and ``POST /mail/settings/{alternates,blocked}/…`` — sharing
  default, linking mode, email links, signature, open and click tracking (SPEC §13; shown
  only where the company allows it), alternate addresses, blocked addresses; for an admin,
  ``POST /mail/settings/company/save`` — the company's unknown contacts, domains, automated
  and internal mail (SPEC §5.10).

A message sent from bccd with tracking shows, on its conversation, how often it was opened
— "opened 3× (2 by machines)" — and clicked, per link, and under "Why" the recent hits
with the rule that made each a machine's (``tracking.rules``). The page itself never loads
a pixel or follows a tracked link: what bccd filed is the user's own, untracked copy.

Sessions, CSRF, security headers and sign-in are ``web.pagebase``'s (cookies:
``web.session``). Reads go through ``mailstore.read`` (the one visibility rule), changes
through the same functions as the API and the CLI; a thread the user may not see is "not
found". Each message's ``srcdoc`` document inherits the page's Content-Security-Policy
(remote images only where the reader asked for them) and adds its own.

Every handler does its database work in one blocking function through ``Database.run``
(the user is re-checked there: a disabled user's session ends at once).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from markupsafe import escape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bccd import accounts
from bccd.compose import signature
from bccd.confirm import flow
from bccd.errors import BccdError, NotFound
from bccd.linking import blocklist, categories, linkstate, manual
from bccd.mailstore import actions, attachments, read, shapes
from bccd.store.models import Attachment, User
from bccd.tracking import policy
from bccd.web.downloads import download, download_blob, safe_content_type
from bccd.web.mailbox_pages import listing as mailbox_listing
from bccd.web.pagebase import HERE, PAGES, PageBase, SignedOut, Viewer, frame_height, srcdoc, templates

if TYPE_CHECKING:
    from bccd.runtime import Services

PAGE_SIZE = 50
FRAME_FACTOR = 8      # a message's frame (as sent, escaped) ≤ 8 × the message's raw size
FRAME_SLACK = 4096    # plus the frame's own head, so a tiny message still shows
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
ITEM_KINDS = ("deal", "lead", "project")
ENTITY_FILTERS = ("person", "organization", "deal", "lead", "project")

NOTICES = {
    "linked": "Linked.", "unlinked": "Link removed.", "visibility": "Visibility changed.",
    "archived": "Conversation archived.", "deleted": "Conversation deleted.",
    "saved": "Settings saved.", "alt_added": "A confirmation link was emailed to the address.",
    "alt_resent": "A new confirmation link was emailed.", "alt_removed": "Address removed.",
    "blocked": "Blocked.", "unblocked": "No longer blocked.",
    "mailbox_removed": "Mailbox removed. Its mail stays.",
    "mailbox_removed_mail": "Mailbox removed, with the mail that came only from it.",
    "sent": "Sent.", "queued": "Queued: your mailbox's server did not take it yet; it will be "
                               "retried, and the message shows how it stands.",
}


class Pages(PageBase):
    """The Mail page's handlers (see the module docstring)."""

    async def threads(self, request: Request) -> Response:
        qp = request.query_params
        try:
            ids = {k: _id(qp.get(k)) for k in ENTITY_FILTERS}
            offset = int(qp.get("offset") or 0)
            if not 0 <= offset <= 1_000_000:
                raise ValueError
            link_state = qp.get("link_state") or None
            if link_state is not None and link_state not in linkstate.STATES:
                raise ValueError
            hide_automated = qp.get("hide_automated") == "1"
            category = (categories.HUMAN if hide_automated
                        else categories.parse_list(",".join(qp.getlist("category"))))
        except ValueError:
            return self._error(400, "Bad request", "The filter or page number is not valid.")
        q = (qp.get("q") or "")[:200].replace("\x00", "")
        archived = qp.get("archived") == "1"

        filters = read.Filters(person=ids["person"], organization=ids["organization"],
                               deal=ids["deal"], lead=ids["lead"], project=ids["project"],
                               q=q, archived=archived, link_state=link_state, category=category)
        needs = read.Filters(archived=False, link_state=linkstate.NEEDS_CHOICE)

        def work(s: Any, user: User) -> dict[str, Any]:
            page = read.list_threads(s, user, filters, limit=PAGE_SIZE, offset=offset)
            active = filters.entities()
            names = read.entity_names(s, user, active)  # only what the viewer may see
            return {"page": page, "needs_linking": read.count_threads(s, user, needs),
                    "filters": [{"kind": k, "id": v, "name": names.get((k, v))}
                                for k, v in active]}

        try:
            viewer, data = await self.read(request, work)
        except SignedOut:
            return self._to_login()
        base = {k: v for k, v in {**ids, "q": q, "archived": "1" if archived else None,
                                  "link_state": link_state,
                                  "hide_automated": "1" if hide_automated else None,
                                  "category": None if hide_automated else ",".join(category)
                                  }.items()
                if v not in (None, "")}
        nxt = data["page"]["next_offset"]
        notice = NOTICES.get(qp.get("done") or "", "")
        return self.page("app_threads.html", title="Conversations", viewer=viewer,
                         threads=data["page"]["threads"], filters=data["filters"], q=q,
                         archived=archived, link_state=link_state, notice=notice,
                         hide_automated=hide_automated,
                         category="" if hide_automated else ",".join(category),
                         needs_linking=data["needs_linking"],
                         next_url=f"/mail?{urlencode({**base, 'offset': nxt})}" if nxt else None,
                         prev_url=(f"/mail?{urlencode({**base, 'offset': max(0, offset - PAGE_SIZE)})}"
                                   if offset else None))

    async def thread(self, request: Request, *, error: str = "", status: int = 200,
                     viewer_hint: Viewer | None = None) -> Response:
        try:
            thread_id = _id(request.path_params["thread_id"])
        except ValueError:
            thread_id = None
        if thread_id is None:
            return self._error(404, "Not found", "There is no such conversation.", viewer_hint)
        images = request.query_params.get("images") == "1"

        def work(s: Any, user: User, viewer: Viewer) -> dict[str, Any]:
            def inline_url(attachment_id: int) -> str:
                mac = self.sessions.inline_mac(viewer.session_id, attachment_id)
                return f"/mail/inline/{viewer.session_id}/{attachment_id}/{mac}"

            shown = read.thread_detail(s, inline_url, user, thread_id,
                                       allow_remote=images, hits=True)
            thread = manual.get_thread(s, thread_id, user)
            for lk in shown["links"]:  # no unlink button where only the owner may unlink
                lk["removable"] = manual.may_remove(s, thread, lk["kind"], lk["id"], user)
            return {"thread": shown, "choices": read.link_choices(s, user)}

        try:
            viewer, data = await self.read(request, work, with_viewer=True)
        except SignedOut:
            return self._to_login()
        except NotFound:
            return self._error(404, "Not found", "There is no such conversation.", viewer_hint)
        shown = data["thread"]
        linked_items = {(lk["kind"], lk["id"]) for lk in shown["links"]}
        origin = self._own_origin(request)
        for m in shown["messages"]:
            m["too_large"] = False
            if m["html"]:
                m["srcdoc"] = srcdoc(m["html"], remote_images=images, origin=origin)
                m["frame_height"] = frame_height(m["html"])
                budget = FRAME_FACTOR * m["raw_size"] + FRAME_SLACK
                if len(escape(m["srcdoc"])) > budget:
                    m["html"] = m["srcdoc"] = None
                    m["too_large"] = True
            if m["text"] and len(escape(m["text"])) > FRAME_FACTOR * m["raw_size"] + FRAME_SLACK:
                m["text"] = None
                m["too_large"] = True
        notice = NOTICES.get(request.query_params.get("done") or "", "")
        return self.page("app_thread.html", status, remote_images=images, title=shown["subject"]
                         or "(no subject)", viewer=viewer, t=shown, images=images, error=error,
                         notice=notice, item_kinds=ITEM_KINDS,
                         choices=[c for c in data["choices"]
                                  if (c["kind"], c["id"]) not in linked_items])

    async def thread_action(self, request: Request) -> Response:
        action = request.path_params["action"]
        try:
            thread_id = _id(request.path_params["thread_id"])
        except ValueError:
            thread_id = None
        if thread_id is None or action not in ("link", "unlink", "visibility", "archive", "delete"):
            return self._error(404, "Not found", "There is no such conversation.")

        back = {"needs": False}

        def work(s: Any, user: User, form: FormData) -> str:
            back["needs"] = form.get("back") == "needs"
            if action in ("link", "unlink"):
                kind, entity_id = _entity(s, user, form)
                fn = actions.link if action == "link" else actions.unlink
                fn(s, user, thread_id, kind, entity_id)
                return "linked" if action == "link" else "unlinked"
            if action == "visibility":
                actions.set_visibility(s, user, thread_id, str(form.get("visibility") or ""))
                return "visibility"
            if action == "archive":
                actions.archive(s, user, thread_id)
                return "archived"
            if form.get("confirm") != "yes":
                manual.get_thread(s, thread_id, user)  # a thread the user may not see: 404
                raise _Invalid("tick the box to confirm that the conversation should be deleted")
            actions.delete(s, user, thread_id)
            return "deleted"

        async def on_error(viewer: Viewer, exc: BccdError) -> Response:
            if isinstance(exc, NotFound) and "thread" in str(exc):
                return self._error(404, "Not found", "There is no such conversation.", viewer)
            status = exc.status if exc.status in (400, 403, 404, 409, 422) else 400
            return await self.thread(request, error=str(exc), status=status, viewer_hint=viewer)

        out = await self.change(request, work, on_error)
        if isinstance(out, Response):
            return out
        _, done = out
        if done == "deleted":
            return RedirectResponse("/mail?" + urlencode({"done": done}), status_code=303)
        if back["needs"]:  # chosen from the "Needs linking" list: back to it
            return RedirectResponse("/mail?" + urlencode({"link_state": linkstate.NEEDS_CHOICE,
                                                          "done": done}), status_code=303)
        return RedirectResponse(f"/mail/threads/{thread_id}?done={done}", status_code=303)

    def _own_origin(self, request: Request) -> str:
        """This page's origin for the message frames' CSP (the request's, if well-formed)."""
        host = request.headers.get("host", "")
        if _HOST.match(host) and request.url.scheme in ("http", "https"):
            return f"{request.url.scheme}://{host}"
        return self.public_origin

    # -------------------------------------------------------------- downloads
    async def inline(self, request: Request) -> Response:
        """An inline image of a shown message (the module docstring says who may)."""
        try:
            session_id = _id(request.path_params["session_id"])
            att_id = _id(request.path_params["attachment_id"])
        except ValueError:
            session_id = att_id = None
        mac = str(request.path_params.get("mac", ""))
        missing = Response("Not found", status_code=404, media_type="text/plain",
                           headers={"Cache-Control": "no-store"})
        if session_id is None or att_id is None or not self.sessions.inline_ok(
                session_id, att_id, mac):
            return missing

        def work() -> tuple[str, bytes] | None:
            with self.db.read() as s:
                found = self.sessions.by_id(s, session_id)
                if found is None:
                    return None
                att = read.inline_part(s, found[1], att_id)
                return att.content_type, self.services.blobs.get(s, att.sha256)

        try:
            got = await self.db.run(work)
        except (NotFound, FileNotFoundError):
            got = None
        if got is None:
            return missing
        ctype, data = got
        return Response(data, media_type=safe_content_type(ctype), headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, max-age=3600",
            "Referrer-Policy": "no-referrer",
        })

    async def attachment(self, request: Request) -> Response:
        try:
            att_id = _id(request.path_params["attachment_id"])
        except ValueError:
            att_id = None

        def work(s: Any, user: User) -> Attachment:
            if att_id is None:
                raise NotFound("no attachment")
            return attachments.attachment_for_user(s, user, att_id)

        db = self.services.db
        try:
            _, att = await self.read(request, work)
            reader = await db.run(attachments.open_content, db, self.services.blobs, att)
        except SignedOut:
            return self._to_login()
        except NotFound:
            return self._error(404, "Not found", "There is no such attachment.")
        return download_blob(db, reader, att.filename or f"attachment-{att_id}", att.content_type)

    async def raw(self, request: Request) -> Response:
        try:
            message_id = _id(request.path_params["message_id"])
        except ValueError:
            message_id = None

        def work(s: Any, user: User) -> tuple[str, bytes]:
            if message_id is None:
                raise NotFound("no message")
            return read.raw_message(s, user, message_id)

        try:
            _, (filename, data) = await self.read(request, work)
        except SignedOut:
            return self._to_login()
        except NotFound:
            return self._error(404, "Not found", "There is no such message.")
        return download(data, filename, "message/rfc822")

    # -------------------------------------------------------------- settings
    async def settings(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        def work(s: Any, user: User) -> dict[str, Any]:
            return {"me": shapes.user_full(s, user, self.services.settings),
                    "signature_html": user.signature_html,
                    "tracking_allowed": policy.allowed(user.company),
                    "alternates": flow.list_for(s, user),
                    "blocked": blocklist.listing(s, user),
                    "mailboxes": mailbox_listing(s, user),
                    "company": shapes.company(user.company, s) if user.is_admin else None}

        try:
            viewer, data = await self.read(request, work)
        except SignedOut:
            return self._to_login()
        notice = NOTICES.get(request.query_params.get("done") or "", "")
        return self.page("app_settings.html", status, title="Settings", viewer=viewer,
                         error=error, notice=notice, **data)

    async def settings_action(self, request: Request) -> Response:
        section = request.path_params.get("section", "")
        action = request.path_params.get("action", "")

        def work(s: Any, user: User, form: FormData) -> str:
            value = str(form.get("value") or "").strip()
            if section == "" and action == "":
                mode = user.linking_mode
                accounts.set_user(s, user, sharing=_opt(form, "sharing_default"),
                                  linking=_opt(form, "linking_mode"),
                                  email_links=_opt(form, "email_links"))
                if user.linking_mode != mode:
                    linkstate.mode_changed(s, user.id)  # SPEC §5.12
                if isinstance(form.get("signature_html"), str):
                    signature.set_signature(s, user, str(form.get("signature_html")))
                if form.get("tracking_form") == "1":  # unticked boxes are not posted
                    policy.set_user(user, opens=form.get("tracking_opens") == "1",
                                    clicks=form.get("tracking_clicks") == "1")
                return "saved"
            if section == "alternates":
                if action == "add":
                    flow.add(s, self.services.settings, user, value)
                    return "alt_added"
                if action == "resend":
                    flow.resend(s, self.services.settings, user, value)
                    return "alt_resent"
                if action == "remove":
                    flow.remove(s, user, value)
                    return "alt_removed"
            if section == "company" and action == "save" and user.is_admin:
                accounts.set_company(
                    s, user.company,
                    create_unknown_contacts=form.get("create_unknown_contacts") == "on",
                    domains=str(form.get("domains") or "").replace("\n", ",").split(","),
                    automated_mail=_opt(form, "automated_mail"),
                    internal_mail=_opt(form, "internal_mail"))
                return "saved"
            if section == "blocked":
                if action == "add":
                    blocklist.add(s, user, value)
                    return "blocked"
                if action == "remove":
                    blocklist.remove(s, user, value)
                    return "unblocked"
            raise NotFound("no such setting")

        async def on_error(viewer: Viewer, exc: BccdError) -> Response:
            status = exc.status if exc.status in (400, 403, 404, 409, 422, 429) else 400
            return await self.settings(request, error=str(exc), status=status)

        out = await self.change(request, work, on_error)
        if isinstance(out, Response):
            return out
        return RedirectResponse(f"/mail/settings?done={out[1]}", status_code=303)


class _Invalid(BccdError):
    status = 422


def _id(value: Any) -> int | None:
    if value in (None, ""):
        return None
    n = int(str(value))
    if not 1 <= n < 2**63:
        raise ValueError("out of range")
    return n


def _opt(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return str(value) if value not in (None, "") else None


def _entity(s: Any, user: User, form: FormData) -> tuple[str, int]:
    """The entity a link form names: ``ref`` = ``kind:id``, or ``person_email``."""
    email = str(form.get("person_email") or "").strip()
    if email:
        return "person", read.person_by_email(s, user, email)
    kind, _, raw_id = str(form.get("ref") or "").partition(":")
    try:
        entity_id = _id(raw_id)
    except ValueError:
        entity_id = None
    if kind not in manual.LINK_KINDS or entity_id is None:
        raise _Invalid("choose what to link")
    return kind, entity_id


def routes(services: Services) -> list[BaseRoute]:
    for name in PAGES:  # compiled now, so no request reads a template file on the loop
        templates.get_template(name)
    pages = Pages(services)

    def home(request: Request) -> Response:
        return RedirectResponse("/mail", status_code=303)

    return [
        Route("/", home),
        Route("/mail", pages.threads),
        Route("/mail/", home),
        Route("/mail/login", pages.login, methods=["GET", "POST"]),
        Route("/mail/logout", pages.logout, methods=["POST"]),
        Route("/mail/threads/{thread_id}", pages.thread),
        Route("/mail/threads/{thread_id}/{action}", pages.thread_action, methods=["POST"]),
        Route("/mail/attachments/{attachment_id}", pages.attachment),
        Route("/mail/messages/{message_id}/raw", pages.raw),
        Route("/mail/inline/{session_id}/{attachment_id}/{mac}", pages.inline),
        Route("/mail/settings", pages.settings),
        Route("/mail/settings", pages.settings_action, methods=["POST"]),
        Route("/mail/settings/{section}/{action}", pages.settings_action, methods=["POST"]),
        Mount("/mail/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
