"""What a message is written from (SPEC §12), read in the writer's session.

Blocking functions on an open session, for the user who writes; every read goes through
the one visibility rule (``linking.visibility``, ``mailstore.read``): something the user
may not see is the same refusal as something that does not exist, and its name is never
shown. Refusals are ``bccd.errors`` naming the request's field.

- ``mailbox_for(s, user, account_id)`` → ``Mailbox``: the mailbox that sends — the one
  asked for, else the user's first mailbox with submission settings; ``Conflict`` (409)
  when the user has none that can send. Its From address is the mailbox's login name
  when that is one of the user's own addresses (login or confirmed alternate) — the
  address the provider lets that login send as —, else the user's login address.
- ``original(s, blobs, user, ref, field)`` → the message replied to or forwarded (by
  bccd's id or by its RFC Message-ID), as ``mime.Original``.
- ``reply_recipients(s, user, message_id, everyone)`` → (to, cc) of a reply (all).
- ``chosen_entity(s, user, ids)`` → the one entity a message is written from.
- ``smart_values(s, user, …)`` → the values of the smart fields (``fields.FIELDS``): a
  deal, lead or project supplies its person and organization unless they are given
  (``organization`` is the item's, else the person's); a project its deal; a thread (a
  reply) its linked person and item.
"""

from __future__ import annotations

import base64
import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd.compose.mime import Original, Part
from bccd.errors import Conflict, Invalid, NotFound
from bccd.ingest.parse import parse
from bccd.linking import participants, visibility
from bccd.mailboxes.accounts import submission_of
from bccd.mailstore import read
from bccd.mailstore.sanitize import MAX_INLINE, clean_outgoing_html
from bccd.store.blobs import Blobs
from bccd.store.models import (
    Attachment,
    ImapAccount,
    Item,
    Link,
    Message,
    MessageRaw,
    Organization,
    Participant,
    Person,
    PersonEmail,
    Thread,
    User,
)

ENTITY_FIELDS = (("deal_id", "deal"), ("lead_id", "lead"), ("project_id", "project"),
                 ("person_id", "person"))
MAX_HEADER = 512 * 1024
_REMOTE = re.compile(r"https?://", re.I)


@dataclass(frozen=True, slots=True)
class Mailbox:
    """The mailbox that sends, as the submission needs it."""

    account_id: int
    host: str
    port: int
    security: str
    username: str
    ca_file: str | None
    from_address: str
    from_name: str

    def label(self) -> str:
        return f"{self.username} at {self.host}:{self.port}"


def mailbox_for(s: Session, user: User, account_id: int | None) -> Mailbox:
    rows = list(s.scalars(select(ImapAccount).where(ImapAccount.user_id == user.id)
                          .order_by(ImapAccount.id)))
    if account_id is not None:
        rows = [r for r in rows if r.id == account_id]
        if not rows:
            raise Invalid(f"from_mailbox: you have no mailbox {account_id}")
        if submission_of(rows[0]) is None:
            raise Conflict(f"mailbox {account_id} ({rows[0].username}) cannot send: it has no "
                           "submission settings (SMTP host, port and security)")
    sending = [r for r in rows if submission_of(r) is not None]
    if not sending:
        raise Conflict("you have no mailbox that can send: connect your mailbox with its "
                       "submission settings (SMTP host, port and security) first")
    row = sending[0]
    sub = submission_of(row)
    assert sub is not None
    own = participants.own_addresses(s, user.id)
    login = row.username.strip().lower()
    return Mailbox(row.id, sub.host, sub.port, sub.security, row.username, row.ca_file,
                   login if login in own else user.email, user.name)


def _message(s: Session, user: User, ref: str | int, field: str) -> Message:
    text = str(ref).strip()
    msg: Message | None = None
    if text.isdigit() and len(text) < 19:
        msg = s.get(Message, int(text))
    elif "@" in text:
        mid = text.strip("<>")
        candidates = list(s.scalars(select(Message).where(
            Message.company_id == user.company_id, Message.message_id == mid)
            .order_by(Message.id)))
        candidates.sort(key=lambda m: m.user_id != user.id)  # the user's own copy first
        for m in candidates:
            try:
                read.get_visible_thread(s, user, m.thread_id)
            except NotFound:
                continue
            msg = m
            break
    if msg is not None:
        try:
            read.get_visible_thread(s, user, msg.thread_id)
            return msg
        except NotFound:
            pass
    raise Invalid(f"{field}: no message {text[:200]!r} that you can see")


def _formatted(name: str, addr: str) -> str:
    return email.utils.formataddr((name, addr)) if name else addr


def _quoted_html(s: Session, blobs: Blobs | None, msg: Message) -> str:
    """The original's HTML to quote in a reply or forward: the allowlist of mail written in
    bccd, remote images kept as written, and each inline image part (up to ``MAX_INLINE``)
    as a ``data:`` image — which compose then turns into a ``cid:`` part of the new
    message, so the quote shows what the original showed."""
    parts = {cid.strip("<>").lower(): (ctype, sha)
             for cid, ctype, sha, size in s.execute(
                 select(Attachment.content_id, Attachment.content_type, Attachment.sha256,
                        Attachment.size)
                 .where(Attachment.message_id == msg.id, Attachment.content_id.is_not(None)))
             if cid and ctype.lower().startswith("image/") and "svg" not in ctype.lower()
             and 0 < size <= MAX_INLINE}

    def image_src(value: str) -> str | None:
        if value.lower().startswith("cid:"):
            found = parts.get(value[4:].strip().strip("<>").lower())
            if found is None or blobs is None:
                return None
            data = base64.b64encode(blobs.get(s, found[1])).decode("ascii")
            return f"data:{found[0]};base64,{data}"
        return value if _REMOTE.match(value) else None

    return clean_outgoing_html(msg.html_body or "", image_src=image_src)


def original(s: Session, blobs: Blobs | None, user: User, ref: str | int, field: str,
             *, with_attachments: bool = False) -> tuple[Message, Original]:
    msg = _message(s, user, ref, field)
    parts = s.execute(select(Participant.role, Participant.email, Participant.name)
                      .where(Participant.message_id == msg.id).order_by(Participant.id)).all()
    refs: tuple[str, ...] = ()
    raw = s.get(MessageRaw, msg.id)
    if raw is not None:
        parsed = parse(bytes(raw.raw)[:MAX_HEADER * 2], max_header_size=MAX_HEADER)
        refs = tuple(parsed.references or parsed.in_reply_to)
    html = _quoted_html(s, blobs, msg) if msg.html_body else None
    attachments: tuple[Part, ...] = ()
    if with_attachments and blobs is not None:
        rows = s.scalars(select(Attachment).where(Attachment.message_id == msg.id,
                                                  Attachment.inline.is_(False))
                         .order_by(Attachment.id))
        attachments = tuple(Part(a.filename or "attachment", a.content_type, blobs.get(s, a.sha256))
                            for a in rows)
    orig = Original(
        message_id=msg.message_id, references=refs,
        sender=_formatted(msg.from_name, msg.from_addr), date=msg.date, subject=msg.subject,
        to=", ".join(_formatted(n, e) for r, e, n in parts if r == "to"),
        cc=", ".join(_formatted(n, e) for r, e, n in parts if r == "cc"),
        html=html, text=msg.text_body, attachments=attachments)
    return msg, orig


def reply_recipients(s: Session, user: User, ref: str | int, *,
                     everyone: bool) -> tuple[list[str], list[str]]:
    """To and Cc of a reply: the sender (its Reply-To if it has one) — or, replying to
    the user's own message, its recipients —; with ``everyone`` the other recipients in
    Cc. The user's own addresses are left out."""
    msg = _message(s, user, ref, "reply_to")
    own = participants.own_addresses(s, user.id)
    parts = s.execute(select(Participant.role, Participant.email, Participant.name)
                      .where(Participant.message_id == msg.id).order_by(Participant.id)).all()
    reply_to = [_formatted(n, e) for r, e, n in parts if r == "reply-to"]
    listed = [(r, e, n) for r, e, n in parts if r in ("to", "cc")]
    if msg.direction == "outgoing" or msg.from_addr in own:
        to = [_formatted(n, e) for r, e, n in listed if r == "to" and e not in own]
        taken = {e for r, e, _ in listed if r == "to"}
    else:
        to = reply_to or [_formatted(msg.from_name, msg.from_addr)]
        taken = {msg.from_addr}
    cc: list[str] = []
    if everyone:
        for _, e, n in listed:
            if e not in own and e not in taken:
                taken.add(e)
                cc.append(_formatted(n, e))
    return to, cc


def chosen_entity(s: Session, user: User, ids: Mapping[str, int | None]) -> tuple[str, int] | None:
    given = [(field, kind, ids[field]) for field, kind in ENTITY_FIELDS if ids.get(field)]
    if len(given) > 1:
        raise Invalid(f"{given[1][0]}: give one of deal_id, lead_id, project_id and person_id")
    if not given:
        return None
    field, kind, entity_id = given[0]
    assert entity_id is not None
    if not visibility.entity_visible(s, user, kind, entity_id):
        raise Invalid(f"{field}: no {kind} {entity_id}")
    return kind, entity_id


def _visible(s: Session, user: User, kind: str, entity_id: int | None,
             field: str | None = None) -> bool:
    if entity_id is None:
        return False
    ok = visibility.entity_visible(s, user, kind, entity_id)
    if not ok and field is not None:
        raise Invalid(f"{field}: no {kind} {entity_id}")
    return ok


def smart_values(s: Session, user: User, *, person_id: int | None = None,
                 organization_id: int | None = None, deal_id: int | None = None,
                 lead_id: int | None = None, project_id: int | None = None,
                 thread_id: int | None = None) -> dict[str, dict[str, str]]:
    given = {"person": person_id, "organization": organization_id, "deal": deal_id,
             "lead": lead_id, "project": project_id}
    for kind, eid in given.items():
        _visible(s, user, kind, eid, f"{kind}_id")
    ids: dict[str, int | None] = dict(given)
    if thread_id is not None:  # a reply: the thread's person and item, unless given
        thread = s.get(Thread, thread_id)
        if thread is not None and visibility.thread_visible(s, user, thread):
            for kind, eid in s.execute(select(Link.kind, Link.entity_id)
                                       .where(Link.thread_id == thread_id).order_by(Link.id)):
                if ids.get(kind) is None and _visible(s, user, kind, eid):
                    ids[kind] = eid
    items = {k: s.get(Item, ids[k]) for k in ("deal", "lead", "project") if ids.get(k)}
    project = items.get("project")
    if project is not None and ids.get("deal") is None and _visible(s, user, "deal", project.deal_id):
        ids["deal"] = project.deal_id
        items["deal"] = s.get(Item, project.deal_id)
    for item in (items.get("deal"), items.get("lead"), project):  # the item's person and org
        if item is None:
            continue
        if ids.get("person") is None and _visible(s, user, "person", item.person_id):
            ids["person"] = item.person_id
        if ids.get("organization") is None and _visible(s, user, "organization",
                                                        item.organization_id):
            ids["organization"] = item.organization_id
    person = s.get(Person, ids["person"]) if ids.get("person") else None
    if (person is not None and ids.get("organization") is None
            and _visible(s, user, "organization", person.organization_id)):
        ids["organization"] = person.organization_id
    org = s.get(Organization, ids["organization"]) if ids.get("organization") else None
    values: dict[str, dict[str, str]] = {"user": {"name": user.name, "email": user.email}}
    if person is not None:
        first_email = s.scalar(select(PersonEmail.email).where(PersonEmail.person_id == person.id)
                               .order_by(PersonEmail.id).limit(1))
        values["person"] = {"name": person.name, "first_name": _first_name(person.name),
                            "email": first_email or ""}
    if org is not None:
        values["organization"] = {"name": org.name}
    for kind in ("deal", "lead", "project"):
        item = items.get(kind)
        if item is not None:
            values[kind] = {"title": item.title, "value": item.value or ""}
    return values


def _first_name(name: str) -> str:
    words = name.replace(",", " ").split()
    if "," in name and len(words) > 1:  # "Smith, Dana"
        return words[1]
    return words[0] if words else ""
