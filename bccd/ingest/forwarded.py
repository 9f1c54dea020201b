"""Forwarded mail (SPEC §4.3): a message the user forwarded to their Smart Bcc address is
logged as the original **incoming** message from its original sender.

``await recover_async(parsed, max_header_size=…)`` → ``Original`` or ``None``: the
original recovered from the copy — CPU work, run off the event loop under
``BUDGET`` seconds (over budget: ``ProcessingTimeout``, a temporary 451). Sources, in
order:

1. exactly one attached ``message/rfc822`` ("forward as attachment"): the attached
   message, parsed with the same limits as any message — its own Message-ID,
   References, addresses, bodies and attachments;
2. the forwarded-header block a mail client writes into the body, in the text part (or
   the HTML part turned into text): Gmail and Thunderbird (``---------- Forwarded
   message ---------``), Outlook (``-----Original Message-----`` or the line of
   underscores, then ``From:/Sent:/To:/Cc:/Subject:``) and Apple Mail (``Begin forwarded
   message:``, possibly ``>``-quoted), with the labels of a few common languages. The
   block gives sender, recipients, subject and date; the body is what follows it; the
   copy's attachments are the original's.

``as_original(request, original, own)`` → the ``FileRequest`` to file: the recovered
original — direction ``incoming`` (``outgoing`` when the original's sender is the user:
they forwarded their own sent mail), sender = the original's From, ``forwarded_by`` =
the user's address, and no authenticity verdict of its own: ``auth.verdict`` is
``forwarded`` with the copy's verdict kept as ``auth.forwarding`` (what was checked is
who forwarded it, never who wrote the original: the block is the forwarder's text) —
or the request unchanged when the copy was not forwarded *to the Smart Bcc address*: a
forward addressed to someone else (any To/Cc that is neither the user's nor at the Bcc
domain) is the user's own outgoing message. When nothing can be
recovered (no block, no parseable From, several attached messages) the caller files the
copy as the user's outgoing message — the raw bytes are kept either way.

Decisions where the SPEC is silent: the original's Message-ID is "recoverable" only from
an attached message or a ``Message-ID:`` line in the block — a Gmail forward's
In-Reply-To is used to *thread* the original, never as its identity (a wrong guess would
dedup it against another message); a header-block original without an id is deduplicated
by a hash of its sender, date, subject and body, so forwarding it twice stores it once; a
date the block states in an unknown format falls back to the copy's own Date.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import hashlib
import html
import re
from dataclasses import dataclass

from bccd.addresses import Addr
from bccd.ingest.filing import FileRequest
from bccd.ingest.outcome import IngestError, ProcessingTimeout
from bccd.ingest.parse import MAX_TEXT, Parsed, parse, parse_address_list
from bccd.linking.participants import counterparts
from bccd.log import get_logger

BUDGET = 20.0
MAX_BLOCK_LINES = 40

log = get_logger("bccd.ingest")


@dataclass(frozen=True, slots=True)
class Original:
    sender: Addr
    parsed: Parsed
    how: str  # rfc822 | gmail | outlook | apple


# ---------------------------------------------------------------- header-block markers
_GMAIL = re.compile(
    r"^-{4,}\s*(?:Forwarded message|Weitergeleitete Nachricht|Message transf[ée]r[ée]"
    r"|Mensaje reenviado|Messaggio inoltrato|Doorgestuurd bericht|Mensagem encaminhada)"
    r"\s*-{4,}\s*$", re.IGNORECASE)
_OUTLOOK = re.compile(
    r"^-{3,}\s*(?:Original Message|Urspr[üu]ngliche Nachricht|Message d'origine"
    r"|Mensaje original|Messaggio originale|Oorspronkelijk bericht)\s*-{3,}\s*$"
    r"|^_{10,}\s*$", re.IGNORECASE)
_APPLE = re.compile(
    r"^(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht"
    r"|D[ée]but du message r[ée]exp[ée]di[ée]|Inicio del mensaje reenviado)\s*:\s*$",
    re.IGNORECASE)
_MARKERS = (("gmail", _GMAIL), ("outlook", _OUTLOOK), ("apple", _APPLE))

_LABELS = {
    "from": ("from", "von", "de", "da", "van", "från"),
    "to": ("to", "an", "à", "a", "para", "aan", "till"),
    "cc": ("cc", "kopie", "copie à"),
    "date": ("date", "sent", "datum", "gesendet", "envoyé", "enviado", "fecha", "inviato",
             "data", "verzonden", "skickat"),
    "subject": ("subject", "betreff", "objet", "asunto", "oggetto", "onderwerp", "ämne",
                "assunto"),
    "message-id": ("message-id",),
    "reply-to": ("reply-to",),
}
_LABEL_OF = {label: key for key, labels in _LABELS.items() for label in labels}
_HEADER_LINE = re.compile(r"^([A-Za-zÀ-ÿ][\wÀ-ÿ .'-]{0,20}?)\s*:\s?(.*)$")
_FWD_SUBJECT = re.compile(r"^\s*(?:(?:fwd?|wg|tr|rv|i|doorst)\s*:\s*)+", re.IGNORECASE)
_MAILTO_BRACKET = re.compile(r"\[mailto:([^\]\s]+)\]", re.IGNORECASE)
_MAILTO_ANGLE = re.compile(r"<mailto:[^>]*>", re.IGNORECASE)


# ---------------------------------------------------------------- entry points
async def recover_async(parsed: Parsed, *, max_header_size: int) -> Original | None:
    if not _may_be_forwarded(parsed):
        return None
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, lambda: recover(parsed, max_header_size=max_header_size))
    try:
        return await asyncio.wait_for(fut, BUDGET)
    except TimeoutError:
        raise ProcessingTimeout(detail="forwarded-message budget exceeded") from None


def as_original(req: FileRequest, original: Original, own: set[str]) -> FileRequest:
    if counterparts("outgoing", req.sender, req.parsed.to, req.parsed.cc, own, req.bcc_domain):
        return req  # forwarded to someone: the user's own outgoing message
    direction = "outgoing" if original.sender.email in own else "incoming"
    log.info("forwarded_copy", user=req.user_id, how=original.how,
             original_sender=original.sender.email, original_message_id=original.parsed.message_id,
             forwarded_by=req.sender.email, direction=direction)
    return dataclasses.replace(req, parsed=original.parsed, direction=direction,
                               sender=original.sender, forwarded_by=req.sender.email,
                               auth=req.auth.forwarded_by(req.sender.email))


def recover(parsed: Parsed, *, max_header_size: int) -> Original | None:
    if len(parsed.rfc822_parts) == 1:
        found = _from_rfc822(parsed.rfc822_parts[0], max_header_size)
        if found is not None:
            return found
    if len(parsed.rfc822_parts) > 1:
        return None  # several messages: no single original
    for text in _texts(parsed):
        found = _from_block(parsed, text)
        if found is not None:
            return found
    return None


def _may_be_forwarded(parsed: Parsed) -> bool:
    if parsed.rfc822_parts or _FWD_SUBJECT.match(parsed.subject):
        return True
    sample = parsed.text or parsed.html
    return any(m.search(line) for line in _lines(sample) for _, m in _MARKERS)


# ---------------------------------------------------------------- attached message
def _from_rfc822(data: bytes, max_header_size: int) -> Original | None:
    try:
        inner = parse(data, max_header_size=max_header_size)
    except IngestError:
        return None
    addrs = parse_address_list(inner.from_values[:1])
    if len(inner.from_values) != 1 or len(addrs) != 1:
        return None
    inner.msg = None  # the wrapper's raw bytes are what is stored
    return Original(addrs[0], inner, "rfc822")


# ---------------------------------------------------------------- header block
def _texts(parsed: Parsed) -> list[str]:
    out = [parsed.text] if parsed.text else []
    if parsed.html:
        out.append(html_to_text(parsed.html))
    return out


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _unquote(line: str) -> str:
    return re.sub(r"^>\s?", "", line)


def _from_block(wrapper: Parsed, text: str) -> Original | None:
    lines = _lines(text)
    for i, line in enumerate(lines):
        how = next((name for name, rx in _MARKERS if rx.match(_unquote(line).strip())), None)
        if how is None:
            continue
        found = _block_after(wrapper, lines[i + 1:], how)
        if found is not None:
            return found
    return None


def _block_after(wrapper: Parsed, rest: list[str], how: str) -> Original | None:
    j = 0
    while j < len(rest) and not _unquote(rest[j]).strip():
        j += 1
    quoted = j < len(rest) and rest[j].lstrip().startswith(">")

    def clean(line: str) -> str:
        line = _unquote(line.lstrip()) if quoted else line
        return line.replace("\xa0", " ").rstrip()

    fields: dict[str, str] = {}
    last: str | None = None
    k = j
    while k < len(rest) and k - j < MAX_BLOCK_LINES:
        line = clean(rest[k])
        if not line.strip():
            break
        m = _HEADER_LINE.match(line.strip().replace("*", ""))
        key = _LABEL_OF.get(m.group(1).strip().lower()) if m else None
        if m and key:
            last = None if key in fields else key
            fields.setdefault(key, m.group(2).strip())
        elif last is not None and line[:1] in (" ", "\t"):
            fields[last] += " " + line.strip()
        elif not fields:
            return None  # the marker is not followed by a header block
        else:
            break
        k += 1
    if "from" not in fields:
        return None
    sender = _address(fields["from"])
    if sender is None:
        return None
    body = "\n".join(clean(x) for x in rest[k:]).strip("\n")
    subject = fields.get("subject") or _FWD_SUBJECT.sub("", wrapper.subject).strip()
    date = _date(fields.get("date", ""), wrapper.date)
    mid = re.findall(r"<([^<>\s]{1,900})>", fields.get("message-id", ""))
    digest = hashlib.sha256("\x00".join(
        ["fwd", sender.email, fields.get("date", ""), subject, re.sub(r"\s+", "", body)]
    ).encode("utf-8", "replace")).hexdigest()
    original = Parsed(
        message_id=mid[0] if mid else None,
        in_reply_to=list(wrapper.in_reply_to),   # threading only (see module docstring)
        references=list(wrapper.references),
        from_values=[fields["from"]],
        sender_value=None,
        to=_addresses(fields.get("to", "")),
        cc=_addresses(fields.get("cc", "")),
        reply_to=_addresses(fields.get("reply-to", "")),
        subject=subject[:4000],
        date=date,
        text=body[:MAX_TEXT],
        html="",
        attachments=list(wrapper.attachments),
        rfc822_parts=[],
        content_hash=digest,
    )
    return Original(sender, original, how)


def _fix_mailto(value: str) -> str:
    value = _MAILTO_ANGLE.sub("", value)
    return _MAILTO_BRACKET.sub(r"<\1>", value).replace("*", "")


def _address(value: str) -> Addr | None:
    found = _addresses(value)
    return found[0] if len(found) == 1 else None


def _addresses(value: str) -> list[Addr]:
    return parse_address_list([_fix_mailto(value)]) if value else []


# ---------------------------------------------------------------- dates
_TZ = {"UTC": 0, "GMT": 0, "UT": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
       "MST": -7, "MDT": -6, "PST": -8, "PDT": -7, "CET": 1, "CEST": 2, "BST": 1,
       "EET": 2, "EEST": 3, "IST": 5.5, "JST": 9, "AEST": 10, "AEDT": 11}
_FORMATS = (
    "%a, %b %d, %Y at %I:%M %p",          # Gmail: Wed, Nov 25, 2026 at 3:14 PM
    "%a, %d %b %Y at %H:%M",              # Gmail 24 h: Wed, 25 Nov 2026 at 15:14
    "%A, %B %d, %Y %I:%M %p",             # Outlook: Wednesday, November 25, 2026 3:14 PM
    "%A, %B %d, %Y at %I:%M %p",
    "%A, %d %B %Y %H:%M",                 # Outlook 24 h: Wednesday, 25 November 2026 15:14
    "%A, %d %B %Y at %H:%M",
    "%B %d, %Y at %I:%M:%S %p",           # Apple: November 25, 2026 at 3:14:07 PM
    "%B %d, %Y at %I:%M %p",
    "%d %B %Y at %H:%M:%S",               # Apple 24 h: 25 November 2026 at 15:14:07
    "%d %B %Y at %H:%M",
    "%d %B %Y %H:%M",                     # Outlook on the web (en-GB): 25 November 2026 18:20
    "%m/%d/%Y %I:%M %p",
    "%d.%m.%Y %H:%M",
)


def _date(value: str, fallback: dt.datetime | None) -> dt.datetime | None:
    value = " ".join(value.replace("\u202f", " ").split())
    if not value:
        return fallback
    whole = value
    tz: dt.tzinfo | None = None
    m = re.search(r"\s+(?:GMT|UTC)?([+-]\d{1,2}):?(\d{2})?$", value)
    if m and (":" in m.group(0) or m.group(0).strip()[:3] in ("GMT", "UTC")):
        sign = -1 if m.group(1).startswith("-") else 1
        hours = abs(int(m.group(1)))
        tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=int(m.group(2) or 0)))
        value = value[:m.start()]
    else:
        word = value.rsplit(" ", 1)[-1]
        if word.upper() in _TZ:
            tz = dt.timezone(dt.timedelta(hours=_TZ[word.upper()]))
            value = value[: -len(word)].strip()
    for fmt in _FORMATS:
        try:
            naive = dt.datetime.strptime(value, fmt)  # the zone is applied below
        except ValueError:
            continue
        zone = tz or (fallback.tzinfo if fallback is not None and fallback.tzinfo else dt.UTC)
        return naive.replace(tzinfo=zone)
    if not re.search(r"\b[AP]M\b", whole, re.IGNORECASE):  # RFC 5322 has no AM/PM
        try:
            parsed = email.utils.parsedate_to_datetime(whole)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return fallback


# ---------------------------------------------------------------- HTML → text
_DROP = re.compile(r"<(head|style|script|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_RULE = re.compile(r"<\s*hr\b[^>]*>", re.IGNORECASE)  # Outlook on the web: a rule, no words
_BREAK = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d|/blockquote|p|div)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def html_to_text(markup: str) -> str:
    """Enough of HTML → text to read a forwarded-header block (not for display)."""
    s = _DROP.sub("", markup[:MAX_TEXT])
    s = _RULE.sub("\n" + "_" * 32 + "\n", s)
    s = _BREAK.sub("\n", s)
    s = _TAG.sub("", s)
    s = html.unescape(s).replace("\xa0", " ")
    return "\n".join(line.strip() for line in s.split("\n"))
