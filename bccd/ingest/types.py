"""Records passed into ingest (dataclasses, never positional tuples)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Source(StrEnum):
    BCC = "bcc"
    IMAP = "imap"


@dataclass(frozen=True, slots=True)
class Target:
    """One accepted recipient: whose copy this is, and an optional pinned entity."""

    rcpt: str                    # the recipient address as given (normalized)
    user_id: int
    company_id: int
    pinned_kind: str | None = None   # deal | lead | project
    pinned_id: int | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str = ""          # "" for the null sender
    client_ip: str = ""
    helo: str = ""
    client_name: str = ""        # reverse DNS / XFORWARD NAME when known
    tls: bool = False
    trusted_results: tuple[str, ...] = ()  # Authentication-Results from a trusted relay


@dataclass(frozen=True, slots=True)
class ImapOrigin:
    """Where an IMAP-synced message came from (recorded for write-back)."""

    account_id: int
    folder: str
    uidvalidity: int
    uid: int
    gm_thrid: str | None = None
    gm_labels: tuple[str, ...] = field(default_factory=tuple)
