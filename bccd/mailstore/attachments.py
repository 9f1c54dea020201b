"""Access to attachments — tenancy of content-addressed blobs.

Blobs are stored once per content (``BlobStore``), so two companies that received the
same file share one blob: a digest is *not* a capability. Callers (the HTTP API, pages)
never fetch by digest; they name an attachment row, and:

``attachment_for_user(session, user, attachment_id)`` → the ``Attachment`` when its
message belongs to the user's company and its thread is visible to the user
(``linking.visibility.thread_visible``: a private thread to its owner only, a shared one
when the user may see every linked entity); otherwise ``NotFound`` — the same answer as
for an id that does not exist, so ids of other tenants' attachments reveal nothing.
A disabled user sees nothing.

``read_attachment(session, blobs, user, attachment_id)`` → ``(attachment, bytes)``, the
whole blob; ``open_content(db, blobs, attachment)`` → a ``BlobReader`` for a download that
streams it chunk by chunk. A blob that no store holds is ``NotFound``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd.errors import NotFound
from bccd.linking import visibility
from bccd.store.blobs import BlobReader, Blobs
from bccd.store.db import Database
from bccd.store.models import Attachment, Message, Thread, User


def attachment_for_user(session: Session, user: User, attachment_id: int) -> Attachment:
    row = session.execute(
        select(Attachment, Message.company_id, Thread)
        .join(Message, Message.id == Attachment.message_id)
        .join(Thread, Thread.id == Message.thread_id)
        .where(Attachment.id == attachment_id)
    ).first()
    if row is None or user.disabled:
        raise NotFound(f"no attachment {attachment_id}")
    attachment, company_id, thread = row
    if company_id != user.company_id or thread.company_id != user.company_id \
            or not visibility.thread_visible(session, user, thread):
        raise NotFound(f"no attachment {attachment_id}")
    return attachment


def read_attachment(session: Session, blobs: Blobs, user: User,
                    attachment_id: int) -> tuple[Attachment, bytes]:
    attachment = attachment_for_user(session, user, attachment_id)
    try:
        return attachment, blobs.get(session, attachment.sha256)
    except FileNotFoundError:
        raise NotFound(f"attachment {attachment_id} has no content on this server") from None


def open_content(db: Database, blobs: Blobs, attachment: Attachment) -> BlobReader:
    """A reader of the blob of an attachment already checked with ``attachment_for_user``
    (blocking: call it in a database thread, after the checking session has ended)."""
    try:
        return blobs.open(db, attachment.sha256)
    except FileNotFoundError:
        raise NotFound(f"attachment {attachment.id} has no content on this server") from None
