"""The sent folder copy of mail written in bccd (SPEC §12), an outbox job of kind
``sent_copy`` queued by ``bccd.compose.send`` once a message went out.

``append_job(settings, db, payload)`` logs in to the mailbox the message was sent through
(``client.connect_account``: the same credentials, OAuth refresh and certificate checks as
sync) and appends the user's copy of the message (the filed bytes, ``Bcc`` kept) to the
sent folder (``\\Sent`` special-use; failing that, a folder named like one) with
``\\Seen`` — unless the provider saves sent mail itself: Gmail (``X-GM-EXT-1``), or any
server whose sent folder already holds a message with this Message-ID (a provider that
saved it as it accepted it). When sync later reads the sent folder, the message it finds
is the one already filed (dedup by Message-ID): it gains the source ``imap``.

Nothing to do (the message, the send or the mailbox is gone; no sent folder) is done.
A mailbox that cannot be reached raises, so the outbox retries with back-off.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bccd.config import Settings
from bccd.crypto import SecretBox
from bccd.errors import NotFound
from bccd.imap.client import FolderInfo, connect_account, find_special
from bccd.log import get_logger
from bccd.store.db import Database
from bccd.store.models import ImapAccount, Message, MessageRaw

log = get_logger("bccd.imap.sentcopy")

SENT_NAMES = ("sent", "sent items", "sent messages", "sent mail", "inbox/sent", "inbox.sent")


def sent_folder(folders: list[FolderInfo]) -> str | None:
    special = find_special(folders, "\\Sent")
    if special is not None:
        return special
    for f in folders:
        if f.selectable and f.name.lower() in SENT_NAMES:
            return f.name
    return None


def _load(db: Database, account_id: int, message_id: int) -> tuple[bytes, str, Any] | None:
    with db.read() as s:
        if s.get(ImapAccount, account_id) is None:
            return None
        row = s.execute(select(MessageRaw.raw, Message.message_id, Message.date)
                        .join(Message, Message.id == MessageRaw.message_id)
                        .where(MessageRaw.message_id == message_id)).first()
        if row is None or not row.message_id:
            return None
        return bytes(row.raw), str(row.message_id), row.date


async def append_job(settings: Settings, db: Database, payload: dict[str, Any]) -> None:
    account_id, message_id = int(payload["account_id"]), int(payload["message_id"])
    found = await db.run(_load, db, account_id, message_id)
    if found is None:
        return
    raw, mid, date = found
    try:
        _, imap = await connect_account(db, SecretBox(settings.secret_keys), account_id)
    except NotFound:
        return
    try:
        if imap.is_gmail:
            log.info("sent_copy_by_provider", account=account_id, message=message_id,
                     provider="gmail")
            return
        folder = sent_folder(await imap.list_folders())
        if folder is None:
            log.warning("sent_copy_no_folder", account=account_id, message=message_id)
            return
        await imap.select(folder, readonly=True)
        if await imap.search(["HEADER", "Message-ID", f"<{mid}>"]):
            log.info("sent_copy_by_provider", account=account_id, message=message_id,
                     folder=folder)
            return
        await imap.call(imap.conn.client.append, folder, raw, flags=("\\Seen",), msg_time=date)
        log.info("sent_copy_appended", account=account_id, message=message_id, folder=folder)
    finally:
        await imap.close()
