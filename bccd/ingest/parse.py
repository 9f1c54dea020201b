"""Bounded MIME parsing: raw bytes in, a ``Parsed`` record out — or a refusal.

Takes the raw message exactly as received (it is stored byte-for-byte elsewhere) and
extracts what linking and display need: ids for threading and dedup, the From header
value(s) (judged strictly by ``bccd.auth.sender``), counterpart addresses, decoded
subject and date, text and HTML bodies, attachments — and what categorizing
(``ingest.categorize``, SPEC §5.10) and meetings (§5.13) need: the automated-mail headers
(``Signals``), an RFC 3464 delivery report (``ingest.reports``) and the first calendar
invite (``ingest.calendar``; the reasons a calendar part was not read are kept in
``calendar_problems``, never a refusal).

Limits (SPEC §5.1): header block over ``max_header_size`` → ``HeaderTooBig`` (552 5.3.4);
more than ``MAX_PARTS`` MIME parts or nesting deeper than ``MAX_DEPTH`` →
``TooComplex`` (554 5.6.0). Everything else that is malformed is parsed leniently: a
broken header, charset or transfer encoding degrades that field, never the message.
This function is CPU work: callers run it off the event loop, under a time budget.
"""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.utils
import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import Message

from bccd.addresses import Addr, try_normalize_email
from bccd.ingest import calendar, reports
from bccd.ingest.calendar import no_nul
from bccd.ingest.outcome import HeaderTooBig, TooComplex

MAX_PARTS = 2000
MAX_DEPTH = 40
MAX_ADDRESSES = 1000        # counterpart addresses kept per message
MAX_HEADER_VALUE = 256 * 1024
MAX_REFS = 100
MAX_TEXT = 2 * 1024 * 1024  # characters of extracted text / html kept for display

_MSGID_RE = re.compile(rb"<([^<>\s\x00]{1,900})>")
_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"  # what \s matches in a bytes pattern
_registry = HeaderRegistry()
TRACE_HEADERS = frozenset(
    {"received", "return-path", "delivered-to", "x-original-to", "authentication-results",
     "arc-seal", "arc-message-signature", "arc-authentication-results", "received-spf",
     "x-received", "x-gm-message-state", "x-google-smtp-source"}
)
_TRACE_NAMES = frozenset(name.encode() for name in TRACE_HEADERS)


@dataclass(frozen=True, slots=True)
class AttachmentPart:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None
    inline: bool


@dataclass(frozen=True, slots=True)
class Signals:
    """The headers that say a message is automated (SPEC §5.10), first values, trimmed."""

    auto_submitted: str = ""        # RFC 3834 Auto-Submitted
    x_autoreply: str = ""
    x_autorespond: str = ""
    precedence: str = ""
    list_id: str = ""
    list_unsubscribe: str = ""
    return_path: str | None = None  # as the delivering server wrote it ("" = null, <>)
    failed_recipients: str = ""     # X-Failed-Recipients (plain-text bounces)

    @classmethod
    def of(cls, first: Callable[[str], str | None]) -> Signals:
        def value(name: str) -> str:
            return " ".join((first(name) or "").split())[:998]

        rp = first("Return-Path")
        return cls(auto_submitted=value("Auto-Submitted"), x_autoreply=value("X-Autoreply"),
                   x_autorespond=value("X-Autorespond"), precedence=value("Precedence"),
                   list_id=value("List-Id"), list_unsubscribe=value("List-Unsubscribe"),
                   return_path=None if rp is None else rp.strip().strip("<>").strip()[:998],
                   failed_recipients=value("X-Failed-Recipients"))


@dataclass(slots=True)
class Parsed:
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    from_values: list[str]          # every From header, unfolded, as text
    sender_value: str | None
    to: list[Addr]
    cc: list[Addr]
    reply_to: list[Addr]
    subject: str
    date: dt.datetime | None
    text: str
    html: str
    attachments: list[AttachmentPart]
    rfc822_parts: list[bytes]       # attached message/rfc822 parts (forwarded originals)
    content_hash: str               # dedup key for messages without a Message-ID
    header_names: list[str] = field(default_factory=list)
    msg: Message | None = None
    signals: Signals = field(default_factory=Signals)
    report: reports.Report | None = None         # an RFC 3464 delivery report
    invite: calendar.Invite | None = None         # the first calendar invite read
    calendar_problems: list[str] = field(default_factory=list)

    @property
    def dedup_key(self) -> str:
        return f"mid:{self.message_id}" if self.message_id else f"sha256:{self.content_hash}"

    def thread_refs(self) -> list[str]:
        """The ids it answers; a bounce's returned message too (it joins that thread)."""
        refs: list[str] = []
        returned = self.report.returned_message_id if self.report is not None else None
        for r in [*(self.references or []), *(self.in_reply_to or []),
                  *([returned] if returned else [])]:
            if r not in refs:
                refs.append(r)
        return refs[-MAX_REFS:]


def header_block_size(raw: bytes, limit: int) -> int:
    """Length of the header block; raises HeaderTooBig when it exceeds ``limit``."""
    end = header_end(raw, limit + 4)
    if end is None:
        if len(raw) > limit:
            raise HeaderTooBig(detail=f"no end of header block within {limit} bytes")
        return len(raw)
    if end > limit:
        raise HeaderTooBig(detail=f"header block of {end} bytes")
    return end


def header_end(raw: bytes, endpos: int) -> int | None:
    """Where the first empty line starts — the first match of ``\\r?\\n\\r?\\n`` ending
    at or before ``endpos`` — or ``None``. Two substring searches: a regular expression
    that begins with an optional character is tried at every position of the header."""
    crlf = raw.find(b"\n\r\n", 0, endpos)
    lf = raw.find(b"\n\n", 0, endpos if crlf < 0 else crlf + 1)  # only one before it
    i = crlf if lf < 0 else lf
    if i < 0:
        return None
    return i - 1 if i and raw[i - 1] == 0x0D else i


def _ids(value: str | None) -> list[str]:
    if not value:
        return []
    raw = value.encode("utf-8", "surrogateescape")
    return [m.decode("utf-8", "replace") for m in _MSGID_RE.findall(raw)][-MAX_REFS:]


def _header_text(value: object) -> str:
    """Decode RFC 2047 words leniently; never raise."""
    if value is None:
        return ""
    s = str(value)
    try:
        text = str(email.header.make_header(email.header.decode_header(s)))
    except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
        text = s
    text = no_nul(text.encode("utf-8", "replace").decode("utf-8", "replace"))
    return " ".join(text.split())[:4000]


def split_address_list(value: str) -> list[str]:
    """Split an address-list on top-level commas (outside quotes, comments, brackets)."""
    out: list[str] = []
    cur: list[str] = []
    quote = False
    depth = 0
    angle = False
    esc = False
    for ch in value:
        if esc:
            cur.append(ch)
            esc = False
            continue
        if ch == "\\":
            esc = True
        elif quote:
            quote = ch != '"'
        elif ch == '"':
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch in ",;" and not depth and not angle:
            piece = "".join(cur).strip()
            if piece:
                out.append(piece)
            cur = []
            if len(out) >= MAX_ADDRESSES:
                return out
            continue
        cur.append(ch)
    piece = "".join(cur).strip()
    if piece:
        out.append(piece)
    return out[:MAX_ADDRESSES]


def parse_address_list(values: list[str]) -> list[Addr]:
    """Counterpart addresses, leniently but boundedly (never used to authorize)."""
    out: list[Addr] = []
    seen: set[str] = set()
    for value in values:
        value = value[:MAX_HEADER_VALUE]
        # a group "name: a, b;" — drop the group name, keep its members
        value = re.sub(r'^[^"<>@,]*:\s*', "", value) if re.match(r'^[^"<>@,]*:', value) else value
        for piece in split_address_list(value):
            found = _cached_piece(piece) if len(piece) <= 998 else _parse_piece(piece)
            for a in found:
                if a.email in seen:
                    continue
                seen.add(a.email)
                out.append(a)
                if len(out) >= MAX_ADDRESSES:
                    return out
    return out


def _parse_piece(piece: str) -> tuple[Addr, ...]:
    """The addresses of one address-list piece."""
    try:
        header = _registry("to", piece)
        addrs = list(header.addresses)  # type: ignore[attr-defined]
    except Exception:  # a piece nothing can be made of is skipped
        return ()
    out = []
    for a in addrs:
        norm = try_normalize_email(a.addr_spec) if a.domain else None
        if norm is not None:
            out.append(Addr(norm, _header_text(a.display_name)[:255]))
    return tuple(out)


# the email package's address parser is slow and people mail the same counterparts again
# and again: a pure function, memoized for pieces of ordinary length
_cached_piece = functools.lru_cache(maxsize=4096)(_parse_piece)


def raw_header_text(value: object) -> str:
    """A header value as text: raw 8-bit bytes (RFC 6532 UTF-8 headers) decoded as UTF-8,
    invalid sequences replaced — never the ``email.header.Header`` object compat32 makes."""
    s = value if isinstance(value, str) else str(value)
    if not s.isascii() and any("\udc80" <= c <= "\udcff" for c in s):
        s = s.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    return no_nul(s)


def _walk(msg: Message) -> list[tuple[Message, int]]:
    """Leaf parts with their depth, iteratively, enforcing the part and depth limits."""
    leaves: list[tuple[Message, int]] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    count = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > MAX_PARTS:
            raise TooComplex(detail=f"more than {MAX_PARTS} MIME parts")
        if depth > MAX_DEPTH:
            raise TooComplex(detail=f"MIME nesting deeper than {MAX_DEPTH}")
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            if part.get_content_type() == "message/rfc822":
                leaves.append((part, depth))
                continue
            stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))
        else:
            leaves.append((part, depth))
    return leaves


def _decode_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return no_nul(payload) if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return no_nul(data.decode(charset, "replace"))
    except (LookupError, UnicodeError):
        return no_nul(data.decode("utf-8", "replace"))


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    return _header_text(name)[:255] if name else ""


def content_hash(raw: bytes, header_len: int) -> str:
    """Hash of the message without trace headers: stable across delivery paths. The lines
    are split at LF alone: every use strips them (a CR before the LF goes with it), and the
    names are compared as bytes (ASCII: ``bytes.lower`` is what ``str.lower`` of their
    latin-1 text gives for them)."""
    head = raw[:header_len]
    body = raw[header_len:]
    kept: list[bytes] = []
    current: list[bytes] = []
    skip = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                current.append(line.strip())
            continue
        if current:
            kept.append(b" ".join(current))
        name = line.split(b":", 1)[0].strip().lower()
        skip = name in _TRACE_NAMES or name.startswith(b"x-")
        current = [] if skip else [line.strip()]
    if current:
        kept.append(b" ".join(current))
    h = hashlib.sha256()
    h.update(b"\n".join(sorted(kept)))
    h.update(b"\n\n")
    h.update(body.translate(None, _ASCII_WHITESPACE))  # re's bytes \s, without a regex
    return h.hexdigest()


def parse(raw: bytes, *, max_header_size: int) -> Parsed:
    header_len = header_block_size(raw, max_header_size)
    try:
        msg = email.message_from_bytes(raw, policy=policy.compat32)
    except RecursionError:
        raise TooComplex(detail="MIME structure too deep to parse") from None
    try:
        leaves = _walk(msg)
    except RecursionError:
        raise TooComplex(detail="MIME structure too deep to parse") from None

    lname_values: dict[str, list[str]] = {}
    for k, v in msg.raw_items():
        lname_values.setdefault(k.lower(), []).append(raw_header_text(v))

    def values(name: str) -> list[str]:
        return lname_values.get(name.lower(), [])

    def first(name: str) -> str | None:
        vals = values(name)
        return vals[0] if vals else None

    mids = _ids(first("Message-ID"))
    text = ""
    html = ""
    attachments: list[AttachmentPart] = []
    rfc822: list[bytes] = []
    invite: calendar.Invite | None = None
    problems: list[str] = []
    for part, _depth in leaves:
        ctype = part.get_content_type()
        if ctype in _CALENDAR_TYPES and invite is None and len(problems) < 5:
            found = _calendar(part)
            if isinstance(found, calendar.Invite):
                invite = found
            else:
                problems.append(found)
        disp = str(part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        fname = _filename(part)
        if ctype == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            data = inner.as_bytes(policy=policy.compat32) if isinstance(inner, Message) else b""
            if data:
                rfc822.append(data)
                attachments.append(AttachmentPart(fname or "forwarded.eml", ctype, data, None, False))
            continue
        if disp != "attachment" and not fname and ctype == "text/plain" and not text:
            text = _decode_text(part)[:MAX_TEXT]
            continue
        if disp != "attachment" and not fname and ctype == "text/html" and not html:
            html = _decode_text(part)[:MAX_TEXT]
            continue
        if part.is_multipart():
            continue
        try:
            decoded = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001 - broken transfer encodings
            decoded = None
        if not isinstance(decoded, bytes):
            continue
        data = decoded
        if not fname and ctype.startswith("text/") and disp != "attachment":
            continue  # alternative text bodies beyond the first
        cid = part.get("Content-ID")
        attachments.append(
            AttachmentPart(
                fname or "",
                no_nul(ctype[:255]),
                data,
                _ids(str(cid))[0] if cid and _ids(str(cid)) else None,
                disp == "inline" or (disp != "attachment" and bool(cid)),
            )
        )
    signals = Signals.of(first)
    date: dt.datetime | None = None
    date_v = values("Date")
    if date_v:
        try:
            date = email.utils.parsedate_to_datetime(date_v[0])
            if date is not None and date.tzinfo is None:
                date = date.replace(tzinfo=dt.UTC)
        except (TypeError, ValueError, IndexError, OverflowError):
            date = None
    return Parsed(
        message_id=mids[0] if mids else None,
        in_reply_to=_ids(first("In-Reply-To")),
        references=_ids(" ".join(values("References"))),
        from_values=values("From"),
        sender_value=first("Sender"),
        to=parse_address_list(values("To")),
        cc=parse_address_list(values("Cc")),
        reply_to=parse_address_list(values("Reply-To")),
        subject=_header_text((values("Subject") or [""])[0]),
        date=date,
        text=text,
        html=html,
        attachments=attachments,
        rfc822_parts=rfc822,
        content_hash=content_hash(raw, header_len),
        header_names=[k.lower() for k in msg.keys()],
        msg=msg,
        signals=signals,
        report=reports.read(msg) or (reports.from_text(text, signals.failed_recipients)
                                     if signals.failed_recipients else None),
        invite=invite,
        calendar_problems=problems,
    )


_CALENDAR_TYPES = ("text/calendar", "application/ics")


def _calendar(part: Message) -> calendar.Invite | str:
    """One calendar part read into an invite, or why not (never raises)."""
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken transfer encodings
        data = None
    if not isinstance(data, bytes):
        return "the calendar part has no content"
    return calendar.read(data)
