"""From a request to send (API, CLI, Mail page) to a message ready to submit (SPEC §12).

``SendRequest`` is what every front hands over. ``prepare(db, settings, blobs, request)``
(blocking) reads, for the writing user: the mailbox that sends (``context.mailbox_for``;
409 when none can), its credentials, the recipients (strictly parsed, errors naming the
field), the original of a reply or forward, the entity the message is written from, the
template (rendered with that entity's — or the replied thread's — smart fields; it
supplies the subject and the body unless they are given), the signature and what is
tracked (``tracking.policy.plan``: the company's policy, the user's settings, the
request's ``track_opens``/``track_clicks``; HTML only); then builds the MIME message
(``mime.build``, within ``smtp.max_message_size``; the recipients' copy tracked, the
user's not). → ``Prepared``.
Refusals are ``bccd.errors`` naming the field; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from bccd.compose import context, mime, recipients, templates
from bccd.compose.context import Mailbox
from bccd.compose.mime import Built, Draft, Part
from bccd.config import Settings
from bccd.crypto import SecretBox
from bccd.errors import Invalid, NotFound
from bccd.mailboxes.accounts import Auth, load_auth
from bccd.store.blobs import Blobs
from bccd.store.db import Database
from bccd.store.models import Message, User
from bccd.tracking import policy
from bccd.tracking.links import Plan, Rewriter


@dataclass(frozen=True, slots=True)
class SendRequest:
    user_id: int
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    template_id: int | None = None
    reply_to: str | None = None        # bccd's message id or the RFC Message-ID
    forward_of: str | None = None
    deal_id: int | None = None
    lead_id: int | None = None
    project_id: int | None = None
    person_id: int | None = None
    attachments: tuple[Part, ...] = field(default=(), repr=False)
    signature: bool = True
    from_mailbox: int | None = None
    track_opens: bool | None = None    # None: the user's setting (SPEC §13)
    track_clicks: bool | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    user_id: int
    company_id: int
    mailbox: Mailbox
    auth: Auth = field(repr=False)
    built: Built
    sender: str                        # envelope sender: the From address
    recipients: tuple[str, ...]        # envelope recipients
    fields: dict[str, str]             # recipient → the request field that named it
    chosen: tuple[str, int] | None     # the entity it is written from
    thread_id: int | None              # the replied (or forwarded) message's thread
    tracking: Plan | None = None       # what is tracked (SPEC §13; ``built.links``)


def _original(s: Session, blobs: Blobs, user: User, req: SendRequest,
              ) -> tuple[Message | None, mime.Original | None, mime.Original | None]:
    if req.reply_to and req.forward_of:
        raise Invalid("forward_of: give reply_to or forward_of, not both")
    if req.reply_to:
        msg, orig = context.original(s, blobs, user, req.reply_to, "reply_to")
        return msg, orig, None
    if req.forward_of:
        msg, orig = context.original(s, blobs, user, req.forward_of, "forward_of",
                                     with_attachments=True)
        return msg, None, orig
    return None, None, None


def prepare(db: Database, settings: Settings, blobs: Blobs, req: SendRequest) -> Prepared:
    box = SecretBox(settings.secret_keys)
    with db.read() as s:
        user = s.get(User, req.user_id)
        if user is None or user.disabled:
            raise NotFound("no such user")
        mailbox = context.mailbox_for(s, user, req.from_mailbox)
        auth = load_auth(s, box, mailbox.account_id)
        to = recipients.parse(req.to, "to")
        cc = recipients.parse(req.cc, "cc")
        bcc = recipients.parse(req.bcc, "bcc")
        if not to:
            raise Invalid("to: at least one recipient is needed")
        envelope = recipients.envelope(to, cc, bcc)
        chosen = context.chosen_entity(s, user, {
            "deal_id": req.deal_id, "lead_id": req.lead_id, "project_id": req.project_id,
            "person_id": req.person_id})
        msg, reply_to, forward_of = _original(s, blobs, user, req)
        subject, html = req.subject, req.html
        if req.template_id is not None:
            rendered = templates.render(
                s, user, req.template_id, deal_id=req.deal_id, lead_id=req.lead_id,
                project_id=req.project_id, person_id=req.person_id,
                thread_id=msg.thread_id if msg is not None else None)
            if subject is None and reply_to is None and forward_of is None:
                subject = rendered["subject"]
            if html is None and req.text is None:
                html = rendered["html"]
        if subject is None and reply_to is None and forward_of is None:
            raise Invalid("subject: required (unless a template, reply_to or forward_of "
                          "supplies it)")
        if html is not None and req.text is not None:
            raise Invalid("text: give html or text, not both")
        signature = user.signature_html if req.signature else ""
        sender = recipients.Recipient(mailbox.from_address, mailbox.from_address,
                                      mailbox.from_name)
        fields = {r.address: f"{name}[{i}]" for name, group in (("bcc", bcc), ("cc", cc),
                                                                 ("to", to))
                  for i, r in enumerate(group)}
        draft = Draft(sender=sender, to=tuple(to), cc=tuple(cc), bcc=tuple(bcc),
                      subject=subject, html=html, text=req.text, signature_html=signature,
                      attachments=req.attachments, reply_to=reply_to, forward_of=forward_of)
        company_id = user.company_id
        thread_id = msg.thread_id if msg is not None else None
        plan = policy.plan(settings, user, opens=req.track_opens, clicks=req.track_clicks,
                           html=html is not None)
    built = mime.build(draft, max_size=settings.smtp.max_message_size,
                       tracking=Rewriter(plan) if plan is not None else None)
    return Prepared(req.user_id, company_id, mailbox, auth, built, sender.address,
                    tuple(r.address for r in envelope), fields, chosen, thread_id,
                    plan if built.tracked else None)
