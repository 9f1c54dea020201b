"""Delivery reports (SPEC §5.10 bounces): what a DSN says, read with the standard library.

``read(msg)`` takes a parsed message (``email`` compat32, as ``ingest.parse`` makes it)
and, when it is an RFC 3464 report (``multipart/report; report-type=delivery-status``),
returns a ``Report``: the recipients whose delivery failed (``Action: failed`` — a
``delayed`` recipient is not bouncing yet), each with its status and diagnostic, and the
returned message's ``Message-ID`` and ``From`` (from its ``message/rfc822`` or
``text/rfc822-headers`` part). ``None`` for anything else.

``from_text(text, failed_header)`` reads the bounces some servers write as plain text
(Gmail's older ones): the failed recipients from ``X-Failed-Recipients``, the returned
Message-ID from the first ``Message-ID:`` line of the body (the returned headers quoted
below "Original message").

Everything is bounded: at most ``MAX_RECIPIENTS`` recipients, header values cut at 998
characters; nothing raises.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from bccd.addresses import try_normalize_email

MAX_RECIPIENTS = 100
MAX_HEADERS = 64 * 1024      # bytes of returned headers read
_ID = re.compile(r"<([^<>\s]{1,900})>")
_BODY_ID = re.compile(r"^\s*message-id:\s*(<[^<>\s]{1,900}>)", re.IGNORECASE | re.MULTILINE)
_ADDR = re.compile(r"[^\s<>;,]+@[^\s<>;,]+")


@dataclass(frozen=True, slots=True)
class Failure:
    email: str
    status: str          # e.g. 5.1.1
    diagnostic: str      # e.g. smtp; 550 5.1.1 user unknown

    def reason(self) -> str:
        return " ".join(p for p in (self.status, self.diagnostic) if p)[:500]


@dataclass(frozen=True, slots=True)
class Report:
    failed: tuple[Failure, ...]
    returned_message_id: str | None
    returned_from: str | None      # normalized address
    structured: bool               # an RFC 3464 report (not a plain-text bounce)


def is_report(msg: Message) -> bool:
    return (msg.get_content_type() == "multipart/report"
            and str(msg.get_param("report-type") or "").lower() == "delivery-status")


def read(msg: Message) -> Report | None:
    if not is_report(msg):
        return None
    payload = msg.get_payload()
    if not isinstance(payload, list):
        return None
    failed: list[Failure] = []
    mid: str | None = None
    sender: str | None = None
    for part in payload:
        if not isinstance(part, Message):
            continue
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            failed.extend(_failures(part))
        elif ctype == "message/rfc822" and mid is None:
            inner = part.get_payload()
            head = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(head, Message):
                mid, sender = _returned(head)
        elif ctype == "text/rfc822-headers" and mid is None:
            mid, sender = _returned(_headers(part))
    return Report(tuple(failed[:MAX_RECIPIENTS]), mid, sender, structured=True)


def from_text(text: str, failed_header: str) -> Report:
    failed = []
    seen: set[str] = set()
    for found in _ADDR.findall(failed_header[:4096]):
        addr = try_normalize_email(found)
        if addr and addr not in seen:
            seen.add(addr)
            failed.append(Failure(addr, "", ""))
    m = _BODY_ID.search(text)
    ids = _ID.findall(m.group(1)) if m else []
    return Report(tuple(failed[:MAX_RECIPIENTS]), ids[0] if ids else None, None,
                  structured=False)


def _failures(part: Message) -> list[Failure]:
    blocks = part.get_payload()
    if not isinstance(blocks, list):  # an unparsed status part: read it as headers
        blocks = _blocks(str(blocks))
    out: list[Failure] = []
    for block in blocks[1:]:  # the first block is about the message, the rest recipients
        if not isinstance(block, Message):
            continue
        if _value(block, "Action").lower() != "failed":
            continue
        addr = _recipient(_value(block, "Final-Recipient")) or _recipient(
            _value(block, "Original-Recipient"))
        if addr is None:
            continue
        out.append(Failure(addr, _value(block, "Status")[:32],
                           _value(block, "Diagnostic-Code")[:400]))
        if len(out) >= MAX_RECIPIENTS:
            break
    return out


def _blocks(text: str) -> list[Message]:
    parser = email.parser.HeaderParser(policy=email.policy.compat32)
    return [parser.parsestr(chunk) for chunk in re.split(r"\r?\n\s*\r?\n", text[:MAX_HEADERS])
            if chunk.strip()][:MAX_RECIPIENTS + 1]


def _recipient(value: str) -> str | None:
    """``rfc822; <user@example.com>`` → ``user@example.com`` (other address types: None)."""
    kind, _, addr = value.partition(";")
    if not addr or kind.strip().lower() != "rfc822":
        return None
    return try_normalize_email(addr.strip().strip("<>").strip())


def _value(block: Message, name: str) -> str:
    v = block.get(name)
    return " ".join(str(v).split())[:998] if v is not None else ""


def _headers(part: Message) -> Message:
    data = part.get_payload(decode=True)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(part.get_payload())
    return email.parser.HeaderParser(policy=email.policy.compat32).parsestr(text[:MAX_HEADERS])


def _returned(head: Message) -> tuple[str | None, str | None]:
    ids = _ID.findall(_value(head, "Message-ID"))
    frm = _ADDR.findall(_value(head, "From"))
    return (ids[0] if ids else None), (try_normalize_email(frm[-1].strip("<>")) if frm else None)
