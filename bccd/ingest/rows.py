"""A stored copy's own rows, written by ``ingest.filing``: the message with its raw bytes
and its source, its attachments, and the IMAP message it was synced from.

``insert_message`` is one statement on PostgreSQL — data-modifying CTEs, which SQLite
does not have — and three on SQLite (5–10 µs each there): two fewer per copy where each
costs about 50 µs of psycopg's client CPU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from bccd.ingest.parse import AttachmentPart
from bccd.ingest.types import ImapOrigin
from bccd.store import dbblobs, direct
from bccd.store.blobs import Prepared
from bccd.store.models import Attachment, ImapMessageRef, Message, MessageRaw, MessageSource
from bccd.store.queries import insert_ignore

Digests = Prepared | Sequence[str]  # a plain sequence: digests of blobs already durable

_MESSAGES, _SOURCES = Message.__table__, MessageSource.__table__
_INSERT_MESSAGE = insert(Message).returning(Message.id)
_INSERT_RAW = insert(MessageRaw)
_INSERT_SOURCE = insert(MessageSource)
_INSERT_ATTACHMENT = insert(Attachment)
_MESSAGE_WITH_RAW: dict[tuple[str, ...], Any] = {}   # ``insert_message`` on PostgreSQL
# ``insert_message`` fills these itself: an INSERT in a CTE applies no Python-side default
_MESSAGE_DEFAULTS = [(c.key, direct.column_default(c))
                     for c in _MESSAGES.columns if c.default is not None]


def _message_with_raw(keys: tuple[str, ...]) -> Any:
    """PostgreSQL: the message (these columns), its raw bytes and its source in one
    statement, returning the message's id."""
    stmt = _MESSAGE_WITH_RAW.get(keys)
    if stmt is None:
        m = insert(Message).values({k: bindparam(k, type_=_MESSAGES.c[k].type) for k in keys}) \
            .returning(_MESSAGES.c.id).cte("m")
        raw = insert(MessageRaw).from_select(["message_id", "raw"], select(
            m.c.id, bindparam("raw", type_=MessageRaw.__table__.c.raw.type))).cte("r")
        src = insert(MessageSource).from_select(["message_id", "source", "created_at"], select(
            m.c.id, bindparam("source", type_=_SOURCES.c.source.type),
            bindparam("created_at", type_=_SOURCES.c.created_at.type))).cte("s")
        stmt = _MESSAGE_WITH_RAW[keys] = select(m.c.id).add_cte(raw, src)
    return stmt


def insert_message(conn: Connection, values: dict[str, Any], raw: bytes, source: str) -> int:
    """The message row, its raw bytes and its source (the message's ``created_at``); its
    id. A column ``values`` leaves out takes its default here: an INSERT in a CTE would
    not apply a Python-side one."""
    row = dict(values)
    for key, default in _MESSAGE_DEFAULTS:
        if key not in row:
            row[key] = default()
    if conn.dialect.name == "postgresql":
        stmt = _message_with_raw(tuple(row))
        return int(direct.execute(conn, stmt, {**row, "raw": raw, "source": source})
                   .scalar_one())
    mid = int(direct.execute(conn, _INSERT_MESSAGE, row).scalar_one())
    direct.execute(conn, _INSERT_RAW, {"message_id": mid, "raw": raw})
    direct.execute(conn, _INSERT_SOURCE, {"message_id": mid, "source": source,
                                          "created_at": row["created_at"]})
    return mid


def insert_attachments(s: Session, message_id: int, parts: Sequence[AttachmentPart],
                       blobs: Digests) -> None:
    """The attachments' rows; their bytes written now when they go into the database (and
    kept from the collector until this transaction ends)."""
    if isinstance(blobs, Prepared):
        if blobs.in_database:
            dbblobs.store(s, zip(blobs.digests, (a.data for a in parts), strict=True))
        digests = list(blobs.digests)
    else:
        digests = list(blobs)
    if digests:
        direct.execute(s.connection(), _INSERT_ATTACHMENT, [
            {"message_id": message_id, "filename": att.filename,
             "content_type": att.content_type, "size": len(att.data), "sha256": digest,
             "content_id": att.content_id, "inline": att.inline}
            for att, digest in zip(parts, digests, strict=True)])


def insert_imap_ref(s: Session, message_id: int, o: ImapOrigin) -> None:
    insert_ignore(s, ImapMessageRef, [{
        "message_id": message_id, "account_id": o.account_id, "folder": o.folder,
        "uidvalidity": o.uidvalidity, "uid": o.uid,
    }])
