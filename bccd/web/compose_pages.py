"""The Mail page's compose form (SPEC §12): Compose, Reply, Reply all and Forward.

Routes (under ``/mail``; the frame — sessions, CSRF, security headers — is ``pagebase``'s):

- ``GET /mail/compose`` — the form; ``?to=`` (an email link), ``?reply_to=ID[&all=1]``,
  ``?forward_of=ID`` (To, Cc and the subject filled in, the original shown below),
  ``?deal=|lead=|project=|person=ID`` (written from that entity: linked, fills the
  template's smart fields), ``?template=ID`` (applied, for pages without JavaScript);
- ``POST /mail/compose`` — sends through ``compose.send.Sender``, exactly as the API does,
  then shows the conversation with "Sent." or "Queued …"; a refusal or bad input shows
  the form again with the error next to its field (attachments must be chosen again).
  Each form carries a draft token used as the ``Idempotency-Key``: posting the same
  draft twice (a double click, a reload) sends it once. Where the company allows
  tracking, "Track opens" and "Track clicks" (ticked as the user's settings say) decide
  for this message (SPEC §13; formatted mail only);
- ``GET /mail/compose/people?q=`` — the company's persons the user may see, for the
  To/Cc/Bcc suggestions (JSON);
- ``POST /mail/compose/render`` — a template filled in for the thread's (or the
  entity's) person and deal (JSON, CSRF-checked), for the template picker.

Without JavaScript the form is plain: a text area (the mail goes as plain text), a
template button that fills it in, file inputs. With it (``static/compose.js``, no inline
script), the text area becomes a Squire rich-text editor (bold, italic, lists, links,
inline images by paste or upload), addresses are suggested as one types, the template
picker fills subject and body at once, and the attachments' total size is checked
against the limit before anything is uploaded.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bccd.compose import context, templates
from bccd.compose.mime import Part, attachment_allowance
from bccd.compose.prepare import SendRequest
from bccd.errors import BccdError, Invalid
from bccd.linking import visibility
from bccd.mailboxes.accounts import submission_of
from bccd.mailstore import read
from bccd.store.models import ImapAccount, Message, Person, PersonEmail, User
from bccd.tracking import policy
from bccd.web.api.messages import body_limit
from bccd.web.pagebase import PageBase, SignedOut, Viewer
from bccd.web.pagebase import templates as pages

if TYPE_CHECKING:
    from bccd.runtime import Services

ENTITY_KINDS = ("deal", "lead", "project", "person")
FIELDS = {"to": "to", "cc": "cc", "bcc": "bcc", "subject": "subject", "html": "body",
          "text": "body", "attachments": "attachments", "template_id": "template",
          "from_mailbox": "from_mailbox"}
_FIELD = re.compile(r"^([a-z_]+)(?:\[|\.|:)")
MAX_SUGGESTIONS = 8


@dataclass
class Draft:
    """What the form shows (and re-shows after an error)."""

    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    template_id: str = ""
    reply_to: str = ""
    forward_of: str = ""
    entity: str = ""               # kind:id
    signature: bool = True
    from_mailbox: str = ""
    track_opens: bool = False      # the form's boxes (SPEC §13): the user's settings at first
    track_clicks: bool = False
    tracking_form: bool = False    # the form showed them (the company allows tracking)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))  # this draft, once
    errors: dict[str, str] = field(default_factory=dict)


def _id(value: Any) -> int | None:
    text = str(value or "").strip()
    if not text.isdigit() or len(text) > 18 or int(text) < 1:
        return None
    return int(text)


def _field_of(message: str) -> str:
    m = _FIELD.match(message)
    return FIELDS.get(m.group(1), "form") if m else "form"


def _shown(message: str) -> str:
    """The error as shown next to its field: without the field's name (the API's
    ``to[0]: …``), which the form says by where it puts it."""
    m = _FIELD.match(message)
    if m is None or FIELDS.get(m.group(1)) is None:
        return message
    return message.split(": ", 1)[1] if ": " in message else message


class ComposePages(PageBase):
    # -------------------------------------------------------------- the form
    def _context(self, s: Any, user: User, d: Draft) -> dict[str, Any]:
        """Everything the form shows besides the draft."""
        rows = s.scalars(select(ImapAccount).where(ImapAccount.user_id == user.id)
                         .order_by(ImapAccount.id))
        mailboxes = [{"id": r.id, "label": f"{r.username} ({r.smtp_host})"}
                     for r in rows if submission_of(r) is not None]
        out: dict[str, Any] = {"mailboxes": mailboxes, "has_signature": bool(user.signature_html),
                               "tracking_allowed": policy.allowed(user.company),
                               "templates": [{"id": t["id"], "name": t["name"]}
                                             for t in templates.list_for(s, user)],
                               "original": None, "entity_label": ""}
        ref = d.reply_to or d.forward_of
        if ref:
            msg, orig = context.original(s, None, user, ref, "reply_to" if d.reply_to else "forward_of")
            out["original"] = {"kind": "reply" if d.reply_to else "forward", "sender": orig.sender,
                               "date": orig.date.isoformat() if orig.date else None,
                               "subject": orig.subject, "text": orig.text[:20000],
                               "thread_id": msg.thread_id}
        kind, _, raw_id = d.entity.partition(":")
        eid = _id(raw_id)
        if kind in ENTITY_KINDS and eid is not None and visibility.entity_visible(s, user, kind, eid):
            out["entity_label"] = read.entity_names(s, user, [(kind, eid)]).get((kind, eid),
                                                                                f"#{eid}")
        return out

    def _show(self, viewer: Viewer, d: Draft, extra: dict[str, Any], status: int = 200) -> Response:
        return self.page("app_compose.html", status, title="Compose", viewer=viewer, d=d,
                         max_size=attachment_allowance(self.services.settings.smtp.max_message_size),
                         error=d.errors.get("form", ""), **extra)

    async def form(self, request: Request) -> Response:
        qp = request.query_params
        d = Draft(to=qp.get("to", "")[:2000], reply_to=str(_id(qp.get("reply_to")) or ""),
                  forward_of=str(_id(qp.get("forward_of")) or ""))
        for kind in ENTITY_KINDS:
            if _id(qp.get(kind)) is not None:
                d.entity = f"{kind}:{_id(qp.get(kind))}"
        template_id = _id(qp.get("template"))

        def work(s: Any, user: User) -> dict[str, Any]:
            d.track_opens, d.track_clicks = user.tracking_opens, user.tracking_clicks
            if d.reply_to:
                to, cc = context.reply_recipients(s, user, d.reply_to, everyone=qp.get("all") == "1")
                d.to, d.cc = ", ".join(to), ", ".join(cc)
            extra = self._context(s, user, d)
            orig = extra["original"]
            if orig is not None:
                subject = orig["subject"]
                prefix = "Re: " if d.reply_to else "Fwd: "
                d.subject = subject if subject.lower().startswith(prefix.lower()) else prefix + subject
            if template_id is not None:
                self._apply(s, user, d, template_id, extra)
            return extra

        try:
            viewer, extra = await self.read(request, work)
        except SignedOut:
            return self._to_login()
        except BccdError as exc:
            return self._error(404, "Not found", str(exc))
        return self._show(viewer, d, extra)

    def _ids(self, d: Draft) -> dict[str, int | None]:
        kind, _, raw = d.entity.partition(":")
        return {f"{k}_id": (_id(raw) if k == kind else None) for k in ENTITY_KINDS}

    def _fill(self, s: Any, user: User, d: Draft, template_id: int,
              thread_id: int | None) -> dict[str, str]:
        ids = self._ids(d)
        return templates.render(s, user, template_id, thread_id=thread_id,
                                deal_id=ids["deal_id"], lead_id=ids["lead_id"],
                                project_id=ids["project_id"], person_id=ids["person_id"])

    def _apply(self, s: Any, user: User, d: Draft, template_id: int, extra: dict[str, Any]) -> None:
        orig = extra.get("original")
        filled = self._fill(s, user, d, template_id, orig["thread_id"] if orig else None)
        if filled["subject"] and not (d.reply_to or d.forward_of):
            d.subject = filled["subject"]
        d.text, d.html, d.template_id = filled["text"], filled["html"], str(template_id)

    # -------------------------------------------------------------- sending
    async def _form_data(self, request: Request) -> FormData | None:
        limit = body_limit(self.services.settings)
        length = request.headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > limit):
            return None
        try:
            return await request.form(max_files=100, max_fields=50, max_part_size=limit)
        except Exception:  # malformed or too large: refused like a missing token
            return None

    async def submit(self, request: Request) -> Response:
        data = self._session(request)
        if data is None:
            return self._to_login()
        form = await self._form_data(request)
        if form is None and int(request.headers.get("content-length") or 0) > body_limit(
                self.services.settings):
            return self._error(413, "Too large", "The message with its attachments is over the "
                               "size limit, so nothing was sent.")
        if (form is None or not self._origin_ok(request)
                or not self.sessions.csrf_ok(data, str(form.get("csrf") or ""))):
            return self._error(403, "Not allowed", "The form was stale or came from another "
                               "site, so nothing was sent. Reload the page and try again.")
        def text(name: str) -> str:
            value = form.get(name) if form is not None else None
            return value if isinstance(value, str) else ""

        d = Draft(to=text("to"), cc=text("cc"), bcc=text("bcc"), subject=text("subject"),
                  text=text("text"), html=text("html"), template_id=text("template_id"),
                  reply_to=text("reply_to"), forward_of=text("forward_of"),
                  entity=text("entity"), from_mailbox=text("from_mailbox"))
        if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", text("token")):
            d.token = text("token")
        d.signature = form.get("signature") == "1"
        d.tracking_form = form.get("tracking_form") == "1"
        d.track_opens, d.track_clicks = form.get("track_opens") == "1", form.get("track_clicks") == "1"
        viewer = await self.db.run(self._viewer_only, data)
        if viewer is None:
            return self._to_login()
        try:
            if form.get("apply_template"):
                return await self._reshow(request, viewer, d, apply=True)
            files = [f for f in form.getlist("attachments") if isinstance(f, UploadFile) and f.filename]
            parts = tuple([Part(f.filename or "attachment", f.content_type or
                                "application/octet-stream", await f.read()) for f in files])
            # the draft's token makes a second click (or a reload of the POST) the same send
            answer = await self.services.sender.send(self._request(viewer, d, parts),
                                                     idempotency_key=f"page:{d.token}")
        except SignedOut:
            return self._to_login()
        except BccdError as exc:
            d.errors[_field_of(str(exc))] = _shown(str(exc))
            return await self._reshow(request, viewer, d, status=exc.status if exc.status in (
                400, 403, 404, 409, 422) else 400)
        if answer.status_code >= 400:
            d.token = secrets.token_urlsafe(18)  # that answer is kept: a corrected draft is new
            body = answer.body
            loc = (body.get("errors") or [{}])[0].get("loc") or ["form"]
            d.errors[FIELDS.get(str(loc[0]), "form")] = str(body.get("detail", "refused"))
            return await self._reshow(request, viewer, d, status=answer.status_code)
        done = answer.body["status"]
        if answer.body.get("thread_id") is None:
            return RedirectResponse(f"/mail?done={done}", status_code=303)
        return RedirectResponse(f"/mail/threads/{answer.body['thread_id']}?done={done}"
                                f"#m{answer.body['id']}", status_code=303)

    def _request(self, viewer: Viewer, d: Draft, parts: tuple[Part, ...]) -> SendRequest:
        html = d.html if d.html.strip() else None
        ids = self._ids(d)
        return SendRequest(
            user_id=viewer.id, to=(d.to,) if d.to.strip() else (), cc=(d.cc,) if d.cc.strip() else (),
            bcc=(d.bcc,) if d.bcc.strip() else (), subject=d.subject if d.subject or not (
                d.reply_to or d.forward_of or d.template_id) else None,
            html=html, text=None if html is not None else (d.text if d.text or not d.template_id else None),
            template_id=_id(d.template_id), reply_to=d.reply_to or None,
            forward_of=d.forward_of or None, attachments=parts, signature=d.signature,
            from_mailbox=_id(d.from_mailbox), deal_id=ids["deal_id"], lead_id=ids["lead_id"],
            project_id=ids["project_id"], person_id=ids["person_id"],
            # the boxes decide for formatted mail; plain text (no script) is never tracked
            track_opens=d.track_opens if d.tracking_form and html is not None else None,
            track_clicks=d.track_clicks if d.tracking_form and html is not None else None)

    async def _reshow(self, request: Request, viewer: Viewer, d: Draft, *, apply: bool = False,
                      status: int = 200) -> Response:
        def work(s: Any, user: User) -> dict[str, Any]:
            extra = self._context(s, user, d)
            if apply and _id(d.template_id) is not None:
                try:
                    self._apply(s, user, d, _id(d.template_id) or 0, extra)
                except BccdError as exc:
                    d.errors["template"] = _shown(str(exc))
            return extra

        try:
            _, extra = await self.read(request, work)
        except BccdError as exc:
            d.errors.setdefault("form", str(exc))
            extra = {"mailboxes": [], "templates": [], "original": None, "entity_label": "",
                     "has_signature": False, "tracking_allowed": False}
        return self._show(viewer, d, extra, status)

    # -------------------------------------------------------------- helpers for the script
    async def people(self, request: Request) -> Response:
        q = (request.query_params.get("q") or "").strip().lower()[:100].replace("\x00", "")

        def work(s: Any, user: User) -> list[dict[str, str]]:
            if len(q) < 1:
                return []
            pat = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = s.execute(
                select(Person.name, PersonEmail.email).join(PersonEmail, PersonEmail.person_id == Person.id)
                .where(Person.company_id == user.company_id,
                       visibility.entity_visible_clause(Person, user),
                       or_(func.lower(Person.name).like(pat, escape="\\"),
                           PersonEmail.email.like(pat, escape="\\")))
                .order_by(Person.name, PersonEmail.email).limit(MAX_SUGGESTIONS))
            return [{"name": name, "email": email} for name, email in rows]

        try:
            _, found = await self.read(request, work)
        except SignedOut:
            return JSONResponse({"error": "signed out"}, status_code=401)
        return JSONResponse(found, headers={"Cache-Control": "no-store"})

    async def render(self, request: Request) -> Response:
        data = self._session(request)
        form = await self._form(request)
        if (data is None or form is None or not self._origin_ok(request)
                or not self.sessions.csrf_ok(data, str(form.get("csrf") or ""))):
            return JSONResponse({"error": "Reload the page and try again."}, status_code=403)
        d = Draft(reply_to=str(_id(form.get("reply_to")) or ""),
                  forward_of=str(_id(form.get("forward_of")) or ""), entity=str(form.get("entity") or ""))
        template_id = _id(form.get("template_id"))

        def work(s: Any, user: User) -> dict[str, Any]:
            if template_id is None:
                raise Invalid("template: choose a template")
            ref = d.reply_to or d.forward_of
            thread_id = s.scalar(select(Message.thread_id).where(Message.id == int(ref))) if ref else None
            if thread_id is not None:
                read.get_visible_thread(s, user, thread_id)
            return self._fill(s, user, d, template_id, thread_id)

        try:
            _, filled = await self.read(request, work)
        except SignedOut:
            return JSONResponse({"error": "signed out"}, status_code=401)
        except BccdError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(filled, headers={"Cache-Control": "no-store"})


def routes(services: Services) -> list[BaseRoute]:
    pages.get_template("app_compose.html")  # compiled now, not on a request
    p = ComposePages(services)
    return [
        Route("/mail/compose", p.form),
        Route("/mail/compose", p.submit, methods=["POST"]),
        Route("/mail/compose/people", p.people),
        Route("/mail/compose/render", p.render, methods=["POST"]),
    ]

