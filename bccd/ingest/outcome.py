"""The closed error taxonomy of ingest and its one mapping to SMTP replies.

A new failure means a new class here and its reply in ``IngestError.reply``; nothing
else maps exceptions to replies. Anything that is *not* an ``IngestError`` is unexpected
and therefore temporary (``451 4.3.0``): only deliberate policy decisions are 5xx.
"""

from __future__ import annotations

import errno
import re
import sqlite3
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from bccd import replies as R
from bccd.auth.sender import FromRefused
from bccd.replies import Reply


class Disposition(StrEnum):
    STORED = "stored"          # committed as a new message
    DUPLICATE = "duplicate"    # already stored (retry or second path): acknowledged, not duplicated
    QUARANTINED = "quarantined"
    DROPPED = "dropped"        # accepted and counted, not stored (blocked, a dropped category)
    SKIPPED = "skipped"        # synced, outside the mailbox's sync scope: recorded, not stored
    REFUSED = "refused"        # permanent refusal (5xx)
    TEMPFAIL = "tempfail"      # temporary failure (4xx): the sender keeps the message


class IngestError(Exception):
    """Base of every failure ingest knows about; ``reply`` is what the peer sees."""

    reply: Reply = R.TEMP_FAILURE
    disposition: Disposition = Disposition.TEMPFAIL

    def __init__(self, reason: str = "", *, detail: str = "", verdict: dict[str, Any] | None = None):
        super().__init__(reason or self.reply.text)
        self.reason = reason or self.reply.text
        self.detail = detail
        self.verdict = verdict or {}

    def smtp_reply(self) -> Reply:
        return self.reply


class Refused(IngestError):
    disposition = Disposition.REFUSED


class MessageTooBig(Refused):
    reply = R.TOO_BIG


class HeaderTooBig(Refused):
    reply = R.HEADER_TOO_BIG


class TooComplex(Refused):
    reply = R.TOO_COMPLEX


class SenderRefused(Refused):
    """Structural From problems or a sender that is not the user (SPEC §4.1): 5.7.1."""

    reply = R.SENDER_REFUSED

    def smtp_reply(self) -> Reply:
        return self.reply.with_text(self.reason)


class UnknownRecipient(Refused):
    """A pinned deal/lead/project address used by a disabled user of its company: to
    them it is unknown, like their own address (SPEC §8 ``user disable``): 5.1.1."""

    reply = R.UNKNOWN_RECIPIENT


class NotAuthentic(Refused):
    """Failed DMARC (SPEC §4.2): 5.7.26, never quarantined, never answered by mail.

    ``reason`` (logged and kept with the rejection) is the full verdict reason, every
    signature included. The peer gets one line: the From domain and the verdict's short
    ``summary`` (built by the Authenticator from fixed phrases), e.g. ``550 5.7.26 Message
    failed DMARC authentication for the From domain corp.test: no DKIM signature, SPF none``.
    """

    reply = R.NOT_AUTHENTIC

    def smtp_reply(self) -> Reply:
        domain = str(self.verdict.get("header_from_domain") or "")
        if not _SAFE_DOMAIN.fullmatch(domain):
            return self.reply
        text = f"{self.reply.text} {domain}"
        summary = str(self.verdict.get("summary") or "")
        if _SAFE_SUMMARY.fullmatch(summary):
            text += f": {summary}"
        return self.reply.with_text(text)


# what may reach the peer: a normalized (A-label) domain, and plain words
_SAFE_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_SAFE_SUMMARY = re.compile(r"[A-Za-z0-9 ,.;:=()/-]{1,200}")


class TemporaryError(IngestError):
    disposition = Disposition.TEMPFAIL


class DnsTemporaryFailure(TemporaryError):
    reply = R.DNS_TEMP_FAILURE


class ProcessingTimeout(TemporaryError):
    reply = R.PROCESSING_TIMEOUT


class StorageFull(TemporaryError):
    reply = R.STORAGE_FULL


class DatabaseUnavailable(TemporaryError):
    reply = R.TEMP_FAILURE


def classify(exc: BaseException) -> IngestError:
    """Map any exception to the taxonomy; unknown → temporary 451 4.3.0."""
    if isinstance(exc, IngestError):
        return exc
    if isinstance(exc, FromRefused):
        return SenderRefused(exc.reason, detail=exc.detail)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(detail=repr(exc))
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        if isinstance(orig, sqlite3.OperationalError) and "full" in str(orig).lower():
            return StorageFull(detail=str(orig))
        if getattr(orig, "sqlstate", None) in ("53100",):  # disk_full
            return StorageFull(detail=str(orig))
        if isinstance(exc, OperationalError):
            return DatabaseUnavailable(detail=str(exc).splitlines()[0])
    return TemporaryError(detail=f"{type(exc).__name__}: {exc}")


@dataclass(slots=True)
class Outcome:
    """What happened to one copy (one recipient of one message)."""

    disposition: Disposition
    reply: Reply
    reason: str = ""
    detail: str = ""          # for the log only, never for the peer
    message_id: int | None = None
    thread_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_error(cls, err: IngestError) -> Outcome:
        return cls(err.disposition, err.smtp_reply(), reason=err.reason, detail=err.detail)
