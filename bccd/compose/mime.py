"""Building the message a user wrote (SPEC §12): well-formed MIME, ready to submit.

``build(draft, max_size=…, tracking=…)`` → ``Built``: the bytes for the submission server
(``sent``, without ``Bcc``), the user's own copy (``copy``: the same message with the
``Bcc`` header, as a mail program keeps it in Sent — this is what bccd files and appends
to the sent folder), the Message-ID and whether SMTPUTF8 is needed. With ``tracking``
(SPEC §13) only ``sent`` carries the rewritten links, the decoy and the pixel. Pure and blocking (parsing,
base64): callers on the event loop run it in a worker thread. Refusals are
``bccd.errors.Invalid`` naming the field.

The shape of the message:

- HTML (``draft.html``): the user's HTML, then the signature, then the quoted original
  (reply) or the forwarded one (forward), all through the sanitizer allowlist of
  displayed mail (``mailstore.sanitize.clean_outgoing_html``), where each ``data:`` image
  becomes a ``cid:`` part — the same bytes once, whatever number of times they appear;
  a ``text/plain`` alternative is generated from it (``inscriptis``, Apache-2.0), laid
  out as the plain-text message below would be.
  ``multipart/alternative`` (text, ``multipart/related`` (html, images)), inside
  ``multipart/mixed`` with the attachments.
- Plain text (``draft.text``, or neither): ``text/plain`` alone, the signature after
  ``-- ``, the original quoted with ``> `` (reply) or below a forwarded-message header
  block (forward).
- Headers: From, To, Cc, Subject, Date, Message-ID at the sender's domain; a reply has
  ``In-Reply-To`` and the original's ``References`` chain plus its id, and ``Re:``; a
  forward ``References`` the original (so it stays in that conversation) and ``Fwd:``.
  A forward carries the original's attachments.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.policy
import email.utils
import hashlib
import html as htmllib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

from bccd.compose.recipients import Recipient
from bccd.errors import Invalid
from bccd.mailstore.sanitize import clean_outgoing_html
from bccd.tracking.links import Rewriter

MAX_SUBJECT = 998
MAX_REFERENCES = 20
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_DATA_IMAGE = re.compile(r"data:(image/[a-z0-9.+-]+);base64,([A-Za-z0-9+/=\s]*)", re.IGNORECASE)
_CTYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}")
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw|vs)\s*(\[\d+\])?\s*:", re.IGNORECASE)
_FWD_PREFIX = re.compile(r"^\s*(fwd?|wg|tr|rv)\s*:", re.IGNORECASE)
_TEXT = ParserConfig(css=CSS_PROFILES["strict"], display_links=True)
QUOTE_STYLE = "margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex"


@dataclass(frozen=True, slots=True)
class Part:
    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Original:
    """The message replied to or forwarded, as the user may see it."""

    message_id: str | None            # RFC 5322 id, without the angle brackets (as filed)
    references: tuple[str, ...]       # its own References (or In-Reply-To) chain, likewise
    sender: str                       # "Name <addr>"
    date: dt.datetime | None
    subject: str
    to: str
    cc: str
    html: str | None                  # sanitized, inline images as data: URIs
    text: str
    attachments: tuple[Part, ...] = ()   # its attachments (carried by a forward)


@dataclass(frozen=True, slots=True)
class Draft:
    sender: Recipient
    to: tuple[Recipient, ...]
    cc: tuple[Recipient, ...] = ()
    bcc: tuple[Recipient, ...] = ()
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    signature_html: str = ""
    attachments: tuple[Part, ...] = ()
    reply_to: Original | None = None
    forward_of: Original | None = None


@dataclass(frozen=True, slots=True)
class Built:
    message_id: str                   # without the angle brackets, as bccd files ids
    sent: bytes = field(repr=False)   # the recipients' bytes
    copy: bytes = field(repr=False)   # the user's own copy (with Bcc; never tracked)
    smtputf8: bool
    subject: str
    html: str | None
    text: str
    tracked: bool = False             # ``sent`` carries tracking (SPEC §13)
    links: tuple[str, ...] = ()       # the tracked links' URLs, by index


def new_message_id(sender: Recipient) -> str:
    domain = sender.address.rpartition("@")[2]
    return f"{secrets.token_hex(12)}.{int(dt.datetime.now(dt.UTC).timestamp())}@{domain}"


def subject_for(draft: Draft) -> str:
    if draft.subject is not None and draft.subject.strip():
        subject = draft.subject
    elif draft.reply_to is not None:
        orig = draft.reply_to.subject
        subject = orig if _REPLY_PREFIX.match(orig) else f"Re: {orig}"
    elif draft.forward_of is not None:
        orig = draft.forward_of.subject
        subject = orig if _FWD_PREFIX.match(orig) else f"Fwd: {orig}"
    else:
        subject = draft.subject or ""
    subject = " ".join(subject.split())
    if len(subject) > MAX_SUBJECT:
        raise Invalid(f"subject: at most {MAX_SUBJECT} characters")
    return subject


def references_for(orig: Original) -> list[str]:
    chain = [r for r in orig.references if r != orig.message_id]
    if orig.message_id:
        chain.append(orig.message_id)
    if len(chain) > MAX_REFERENCES:  # RFC 5322 §3.6.4: keep the first and the latest
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1):]]
    return chain


def to_text(html: str) -> str:
    """The plain-text rendering of (sanitized) HTML."""
    text = get_text(html, _TEXT) if html.strip() else ""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()) + "\n"


class _Images:
    """``data:`` images found in the HTML, each once, named by a ``cid:``."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.parts: list[tuple[str, Part]] = []   # (content id, part)
        self._by_digest: dict[str, str] = {}
        self._token = secrets.token_hex(6)

    def src(self, value: str) -> str | None:
        low = value[:16].lower()
        if low.startswith(("https://", "http://")):
            return value
        if not low.startswith("data:"):
            return None  # cid: of nothing we send, relative, javascript: … are dropped
        m = _DATA_IMAGE.fullmatch(value)
        if m is None or m.group(1).lower() not in IMAGE_TYPES:
            return None
        try:
            data = base64.b64decode("".join(m.group(2).split()), validate=True)
        except (binascii.Error, ValueError):
            return None
        digest = hashlib.sha256(data).hexdigest()
        cid = self._by_digest.get(digest)
        if cid is None:
            n = len(self.parts) + 1
            cid = f"img{n}.{self._token}@{self.domain}"
            ext = m.group(1).lower().split("/")[1].replace("jpeg", "jpg")
            self.parts.append((cid, Part(f"image{n}.{ext}", m.group(1).lower(), data)))
            self._by_digest[digest] = cid
        return f"cid:{cid}"


def _attribution(orig: Original) -> str:
    when = email.utils.format_datetime(orig.date) if orig.date else "an earlier date"
    return f"On {when}, {orig.sender} wrote:"


def _forward_header(orig: Original) -> list[tuple[str, str]]:
    rows = [("From", orig.sender)]
    if orig.date:
        rows.append(("Date", email.utils.format_datetime(orig.date)))
    rows.append(("Subject", orig.subject))
    if orig.to:
        rows.append(("To", orig.to))
    if orig.cc:
        rows.append(("Cc", orig.cc))
    return rows


def _html_of(orig: Original) -> str:
    if orig.html:
        return orig.html
    return "<div style=\"white-space:pre-wrap\">" + htmllib.escape(orig.text) + "</div>"


def _compose_html(draft: Draft) -> str:
    out = [draft.html or ""]
    if draft.signature_html:
        out.append(f"<br><div>-- <br>{draft.signature_html}</div>")
    if draft.reply_to is not None:
        orig = draft.reply_to
        out.append(f"<br><div>{htmllib.escape(_attribution(orig))}<br>"
                   f"<blockquote style=\"{QUOTE_STYLE}\">{_html_of(orig)}</blockquote></div>")
    if draft.forward_of is not None:
        orig = draft.forward_of
        rows = "".join(f"{k}: {htmllib.escape(v)}<br>" for k, v in _forward_header(orig))
        out.append(f"<br><div>---------- Forwarded message ---------<br>{rows}<br>"
                   f"{_html_of(orig)}</div>")
    return "".join(out)


def _compose_text(draft: Draft, body: str) -> str:
    """The plain-text message (or alternative): ``body``, the signature after ``-- ``,
    the original quoted with ``> `` or below the forwarded-message header block."""
    body = body.replace("\r\n", "\n").strip("\n")
    out = [body + "\n" if body else ""]
    if draft.signature_html:
        out.append("\n-- \n" + to_text(draft.signature_html))
    if draft.reply_to is not None:
        orig = draft.reply_to
        quoted = orig.text or (to_text(orig.html) if orig.html else "")
        lines = quoted.rstrip("\n").splitlines() or [""]
        out.append("\n" + _attribution(orig) + "\n"
                   + "".join((f"> {ln}" if ln else ">") + "\n" for ln in lines))
    if draft.forward_of is not None:
        orig = draft.forward_of
        head = "".join(f"{k}: {v}\n" for k, v in _forward_header(orig))
        body_text = orig.text or (to_text(orig.html) if orig.html else "")
        out.append("\n---------- Forwarded message ---------\n" + head + "\n" + body_text)
    return "".join(out)


def _none(value: str) -> None:
    return None


def _address(r: Recipient) -> Address:
    local, _, domain = r.address.rpartition("@")
    return Address(display_name=r.name, username=local, domain=domain)


def _ctype(value: str) -> tuple[str, str]:
    v = value.strip().lower()
    if not _CTYPE.fullmatch(v):
        v = "application/octet-stream"
    maintype, _, subtype = v.partition("/")
    return maintype, subtype


def _headers(msg: EmailMessage, draft: Draft, subject: str, message_id: str,
             date: dt.datetime) -> None:
    msg["From"] = _address(draft.sender)
    if draft.to:
        msg["To"] = [_address(r) for r in draft.to]
    if draft.cc:
        msg["Cc"] = [_address(r) for r in draft.cc]
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = f"<{message_id}>"
    if draft.reply_to is not None:
        chain = references_for(draft.reply_to)
        if draft.reply_to.message_id:
            msg["In-Reply-To"] = f"<{draft.reply_to.message_id}>"
        if chain:
            msg["References"] = " ".join(f"<{r}>" for r in chain)
    elif draft.forward_of is not None and draft.forward_of.message_id:
        msg["References"] = f"<{draft.forward_of.message_id}>"


def _message(draft: Draft, policy: email.policy.Policy, subject: str, message_id: str,
             date: dt.datetime, text: str, html: str | None,
             images: list[tuple[str, Part]]) -> EmailMessage:
    """The message without ``Bcc``: headers, the text (and HTML, with its images), then
    the attachments."""
    msg = EmailMessage(policy=policy)
    _headers(msg, draft, subject, message_id, date)
    msg.set_content(text, subtype="plain", cte="quoted-printable")
    if html is not None:
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
        if images:
            html_part = msg.get_payload()[1]  # type: ignore[index]
            assert isinstance(html_part, EmailMessage)
            for cid, part in images:
                maintype, subtype = _ctype(part.content_type)
                html_part.add_related(part.data, maintype, subtype, cid=f"<{cid}>",
                                      filename=part.filename, disposition="inline")
    carried = draft.forward_of.attachments if draft.forward_of is not None else ()
    for part in (*draft.attachments, *carried):
        maintype, subtype = _ctype(part.content_type)
        msg.add_attachment(part.data, maintype, subtype, filename=_filename(part.filename))
    for sub in msg.walk():
        if sub is not msg:
            del sub["MIME-Version"]  # the email package repeats it on every part
    return msg


def _keep(value: str) -> str:
    return value


def build(draft: Draft, *, max_size: int, message_id: str | None = None,
          now: dt.datetime | None = None, tracking: Rewriter | None = None) -> Built:
    """The message (module docstring). With ``tracking`` (SPEC §13), ``sent`` — what the
    recipients get — has its ``http(s)`` links rewritten, the hidden decoy link and the
    pixel; ``copy`` — the user's own, filed and appended to the sent folder — has none of
    it, and both have the same plain-text alternative (no pixel, links as written)."""
    utf8 = any(r.needs_utf8 for r in (draft.sender, *draft.to, *draft.cc, *draft.bcc))
    policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    message_id = message_id or new_message_id(draft.sender)
    subject = subject_for(draft)
    date = now or dt.datetime.now(dt.UTC)
    html: str | None = None
    tracked: str | None = None
    images: list[tuple[str, Part]] = []
    if draft.html is not None:
        found = _Images(draft.sender.address.rpartition("@")[2])
        html = clean_outgoing_html(_compose_html(draft), image_src=found.src)
        text = _compose_text(draft, to_text(clean_outgoing_html(draft.html, image_src=_none)))
        images = found.parts
        if tracking is not None:
            tracked = tracking.wrap(clean_outgoing_html(html, image_src=_keep,
                                                        link_href=tracking.href))
    else:
        text = _compose_text(draft, draft.text or "")
    msg = _message(draft, policy, subject, message_id, date, text, html, images)
    if draft.bcc:
        msg["Bcc"] = [_address(r) for r in draft.bcc]
    copy = msg.as_bytes()
    if tracked is not None:
        sent = _message(draft, policy, subject, message_id, date, text, tracked,
                        images).as_bytes()
    else:
        del msg["Bcc"]
        sent = msg.as_bytes()
    if len(sent) > max_size:
        carried = draft.forward_of.attachments if draft.forward_of is not None else ()
        where = "attachments" if draft.attachments or carried else "html"
        raise Invalid(f"{where}: the message would be {_mb(len(sent))}, over the limit of "
                      f"{_mb(max_size)}")
    links = tuple(tracking.links) if tracking is not None and tracked is not None else ()
    return Built(message_id, sent, copy, utf8, subject, html, text,
                 tracked=tracked is not None, links=links)


def without_bcc(copy: bytes) -> bytes:
    """The bytes for the server from the user's copy (``Built.copy``): its ``Bcc`` field
    removed, nothing else touched (``== Built.sent`` of an untracked message)."""
    end = copy.find(b"\r\n\r\n")
    if end < 0:
        return copy
    lines = copy[:end + 2].split(b"\r\n")[:-1]
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line[:4].lower() == b"bcc:"
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept) + copy[end:]


def attachment_allowance(max_message_size: int) -> int:
    """How many bytes of attachments fit in a message of ``max_message_size``: base64
    makes them a third larger, and the text, HTML and headers need room too."""
    return max(0, max_message_size * 3 // 4 - 64 * 1024)


def _filename(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip() or "attachment"
    return name[:200]


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def sizes(parts: Sequence[Part]) -> int:
    return sum(len(p.data) for p in parts)
