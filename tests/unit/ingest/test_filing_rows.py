"""What filing writes for a copy, on both engines: the message, its raw bytes exactly as
received (a NUL byte too, which the stored text shows as U+FFFD), and its source with the
message's time — on PostgreSQL in one statement."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import event, select

from bccd.addresses import Addr
from bccd.auth.verdict import SKIPPED
from bccd.ingest import filing, rows
from bccd.ingest.outcome import Disposition
from bccd.ingest.parse import parse
from bccd.ingest.types import Source
from bccd.store.db import Database
from bccd.store.models import Message, MessageRaw, MessageSource, Thread
from tests.support.mail import make_message
from tests.unit.builders import company_and_user

pytestmark = pytest.mark.spec("5.3")


def test_a_copy_is_stored_with_its_raw_bytes_and_source(function_db: Database) -> None:
    with function_db.transaction() as s:
        _c, u = company_and_user(s)
        uid = u.id
    raw = make_message(frm="Alice <alice@acme.test>", to="Carol <carol@client.test>",
                       message_id="<rows@acme.test>", body="Grüße\r\n\x00 kept as is") \
        + b"\r\n"
    req = filing.FileRequest(
        user_id=uid, raw=raw, parsed=parse(raw, max_header_size=512 * 1024),
        source=Source.BCC, direction="outgoing", sender=Addr("alice@acme.test", "Alice"),
        auth=SKIPPED, bcc_domain="bcc.localhost", raw_sha256=hashlib.sha256(raw).hexdigest())
    inserts: list[set[str]] = []

    @event.listens_for(function_db.engine, "before_cursor_execute")
    def record(_conn: Any, _cur: Any, stmt: str, *_a: Any) -> None:
        tables = {t for t in ("messages", "message_raw", "message_sources")
                  if f"INSERT INTO {t} " in stmt}
        if tables:
            inserts.append(tables)

    out = function_db.write_sync(filing.file_in, req, [])
    assert out.disposition is Disposition.STORED
    with function_db.read() as s:
        msg = s.get(Message, out.message_id)
        stored = s.get(MessageRaw, out.message_id)
        src = s.scalars(select(MessageSource).where(
            MessageSource.message_id == out.message_id)).one()
        assert msg is not None and stored is not None
        assert bytes(stored.raw) == raw and msg.raw_size == len(raw)
        assert "\ufffd kept as is" in msg.text_body   # the NUL: PostgreSQL refuses it
        assert (src.source, src.created_at) == ("bcc", msg.created_at)
    # PostgreSQL: one statement (data-modifying CTEs) inserts all three
    assert inserts == ([{"messages"}, {"message_raw"}, {"message_sources"}]
                       if function_db.is_sqlite
                       else [{"messages", "message_raw", "message_sources"}])


def test_columns_left_out_of_the_message_take_their_defaults(function_db: Database) -> None:
    """The message insert gives a column it is not given its default on both engines (in
    PostgreSQL's one statement too, where SQLAlchemy would not apply it)."""
    with function_db.transaction() as s:
        c, u = company_and_user(s)
        thread = Thread(company_id=c.id, owner_id=u.id, subject="x")
        s.add(thread)
        s.flush()
        mid = rows.insert_message(s.connection(), {
            "company_id": c.id, "user_id": u.id, "thread_id": thread.id, "dedup_key": "k",
            "message_id": "<k@x>", "direction": "outgoing", "raw_sha256": "0" * 64},
            b"raw", "imap")
    with function_db.read() as s:
        msg = s.get(Message, mid)
        assert msg is not None
        assert (msg.from_addr, msg.raw_size, msg.auth, msg.category) == ("", 0, {}, "person")
        assert msg.created_at is not None and msg.unverified_sender is False
