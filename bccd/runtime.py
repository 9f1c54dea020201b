"""What the running parts of ``bccd serve`` share, passed in explicitly (never a global).

``Services`` holds the settings, the database, the ingest pipeline (with its blob store),
the sender of mail written in bccd (``compose.send.Sender``, built over that pipeline) and
how to ask whether SMTP listens (``/healthz``). ``bccd.service`` makes it; the HTTP
app and the background workers take it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bccd.compose.send import Sender
from bccd.config import Settings
from bccd.ingest.pipeline import Pipeline
from bccd.mailboxes.control import MailboxControl
from bccd.store.blobs import Blobs
from bccd.store.db import Database


def _not_listening() -> bool:
    return False


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    pipeline: Pipeline
    smtp_listening: Callable[[], bool] = field(default=_not_listening)
    # the poller's stop/wake and the IMAP front's login probe (``bccd.mailboxes.control``)
    mailboxes: MailboxControl = field(default_factory=MailboxControl)
    sender: Sender = field(init=False)

    def __post_init__(self) -> None:
        self.sender = Sender(self.settings, self.db, self.pipeline)

    @property
    def blobs(self) -> Blobs:
        return self.pipeline.blobs
