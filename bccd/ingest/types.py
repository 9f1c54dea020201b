"""Records passed into ingest (dataclasses, never positional tuples)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum


class Source(StrEnum):
    BCC = "bcc"
    IMAP = "imap"
    COMPOSE = "compose"   # written in bccd and sent through the user's mailbox (SPEC §12)


@dataclass(frozen=True, slots=True)
class Target:
    """One accepted recipient: whose copy this is, and an optional pinned entity."""

    rcpt: str                    # the recipient address as given (normalized)
    user_id: int | None          # None for a pinned address: found from the From address
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
    """Where an IMAP-synced message came from (recorded for write-back), and what the
    account says about it: whether it is in the sent folder, whose Authentication-Results
    are the provider's own (SPEC §7 "Direction of synced mail")."""

    account_id: int
    folder: str
    uidvalidity: int
    uid: int
    gm_thrid: str | None = None
    gm_labels: tuple[str, ...] = field(default_factory=tuple)
    sent: bool = False                   # in the account's \Sent folder, or has Gmail's \Sent label
    authserv_ids: tuple[str, ...] = ()   # the provider's own (its Authentication-Results)
    scope: str = "all"                   # the account's sync scope: all | known (SPEC §7)


class FilingOrder:
    """Copies handed to the database in the order their turns were taken (``take``),
    whatever order their parsing finishes in. IMAP sync parses a group of messages at
    once in worker threads; filed in UID order — the order the mailbox holds a
    conversation in — a reply finds its parent's thread instead of starting one that
    the parent must later merge."""

    def __init__(self) -> None:
        self._last: asyncio.Future[None] | None = None

    def take(self) -> Turn:
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        turn = Turn(self._last, mine)
        self._last = mine
        return turn


@dataclass(frozen=True, slots=True)
class Turn:
    """One copy's place in a ``FilingOrder``: ``wait`` for the copy before, ``done`` once
    this one is queued for the database (or will not be: a failure passes the turn on)."""

    before: asyncio.Future[None] | None
    mine: asyncio.Future[None]

    async def wait(self) -> None:
        if self.before is not None and not self.before.done():
            await asyncio.shield(self.before)

    def done(self) -> None:
        if not self.mine.done():
            self.mine.set_result(None)
