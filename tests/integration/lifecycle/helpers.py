"""Helpers for the lifecycle tests: a company per test on a shared server, and generic
"is anything left?" queries over every table of ``Base.metadata`` — so a table added
later is checked without touching these tests."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from bccd import accounts
from bccd.store.db import Database
from bccd.store.models import Base, Message, Thread
from bccd.store.models_storage import Blob, BlobChunk
from tests.support.mail import make_message, send
from tests.support.server import BccdServer


class World:
    """One company (unique slug and user domain) on a shared server."""

    def __init__(self, srv: BccdServer, label: str) -> None:
        self.srv = srv
        label = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:16]
        self.slug = f"{label}-{uuid.uuid4().hex[:8]}"
        self.domain = f"{self.slug}.test"
        srv.cli("company", "create", self.slug.title(), "--slug", self.slug)

    def user(self, local: str) -> dict[str, Any]:
        return dict(self.srv.cli("user", "create", f"{local}@{self.domain}", "--company",
                                 self.slug, "--name", local.title()))

    def person(self, name: str, *emails: str) -> int:
        args = ["person", "create", "--company", self.slug, "--name", name]
        for e in emails:
            args += ["--email", e]
        return int(self.srv.cli(*args)["id"])

    def deal(self, title: str, person_id: int) -> dict[str, Any]:
        return dict(self.srv.cli("deal", "create", "--company", self.slug, "--title", title,
                                 "--person", str(person_id)))


def mail(srv: BccdServer, rcpt: str | list[str], *, frm: str, to: str, subject: str,
         cc: str | None = None, attachments: list[tuple[str, str, bytes]] | None = None,
         body: str = "Hello.\n", message_id: str | None = None,
         in_reply_to: str | None = None) -> int:
    """Send one message over SMTP; returns the DATA reply code."""
    raw = make_message(frm=frm, to=to, cc=cc, subject=subject, body=body,
                       attachments=attachments, in_reply_to=in_reply_to, references=in_reply_to,
                       message_id=message_id or f"<{uuid.uuid4().hex}@lifecycle.test>")
    address = frm.rpartition("<")[2].rstrip(">") if "<" in frm else frm
    return send(srv.smtp_port, rcpt, raw, mail_from=address)[0]


def db_url_of(srv: BccdServer) -> str:
    url = srv.sections.get("database", {}).get("url")
    if url:
        return str(url)
    return f"sqlite:///{Path(srv.sections['storage']['data_dir']) / 'bccd.sqlite3'}"


def engine_of(srv: BccdServer) -> Engine:
    return create_engine(db_url_of(srv))


def blob_dir_of(srv: BccdServer) -> Path:
    return Path(srv.sections["storage"]["data_dir"]) / "blobs"


def blob_exists(srv: BccdServer, sha256: str) -> bool:
    """In either store: a file under the blob directory, or a row of ``blobs``."""
    if (blob_dir_of(srv) / sha256[:2] / sha256[2:4] / sha256).exists():
        return True
    return bool(scalar(srv, select(func.count()).select_from(Blob).where(Blob.sha256 == sha256)))


def blob_bytes(srv: BccdServer, sha256: str) -> bytes | None:
    """The blob's bytes from whichever store holds it (its file, or its database rows)."""
    path = blob_dir_of(srv) / sha256[:2] / sha256[2:4] / sha256
    if path.exists():
        return path.read_bytes()
    eng = engine_of(srv)
    try:
        with eng.connect() as conn:
            if conn.execute(select(Blob.sha256).where(Blob.sha256 == sha256)).first() is None:
                return None
            return b"".join(bytes(d) for d in conn.execute(
                select(BlobChunk.data).where(BlobChunk.sha256 == sha256).order_by(BlobChunk.n)
            ).scalars())
    finally:
        eng.dispose()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace").lower()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False).lower()
    return str(value).lower()


def rows_mentioning(srv: BccdServer, needles: Iterable[str]) -> list[str]:
    """``table.column`` for every value, in every table, holding one of ``needles``."""
    needles = [n.lower() for n in needles]
    hits = []
    eng = engine_of(srv)
    try:
        with eng.connect() as conn:
            for table in Base.metadata.sorted_tables:
                for row in conn.execute(select(table)):
                    for col, value in zip(table.columns, row, strict=True):
                        text = _text(value)
                        hits.extend(f"{table.name}.{col.name}={n}" for n in needles if n in text)
    finally:
        eng.dispose()
    return hits


def rows_referencing(srv: BccdServer, target: str, ids: Iterable[int]) -> list[str]:
    """``table.column`` for every row whose foreign key to ``target`` (``users.id``) names one of ``ids``."""
    ids = list(ids)
    hits = []
    eng = engine_of(srv)
    try:
        with eng.connect() as conn:
            for table in Base.metadata.sorted_tables:
                for fk in table.foreign_keys:
                    if fk.target_fullname != target:
                        continue
                    n = len(conn.execute(select(fk.parent).where(fk.parent.in_(ids))).all())
                    if n:
                        hits.append(f"{table.name}.{fk.parent.name}: {n}")
                if f"{table.name}.id" == target:
                    n = len(conn.execute(select(table.c.id).where(table.c.id.in_(ids))).all())
                    if n:
                        hits.append(f"{table.name}.id: {n}")
    finally:
        eng.dispose()
    return hits


def scalar(srv: BccdServer, query: Any) -> Any:
    eng = engine_of(srv)
    try:
        with eng.connect() as conn:
            return conn.execute(query).scalar()
    finally:
        eng.dispose()


def bare_message(db: Database) -> int:
    """A message of a new company's user, with no attachment yet: something for blob
    tests to hang attachments on. Its id."""
    with db.transaction() as s:
        company = accounts.create_company(s, "Acme", f"acme-{uuid.uuid4().hex[:6]}")
        user = accounts.create_user(s, f"alice@{company.slug}.test", company).user
        thread = Thread(company_id=company.id, owner_id=user.id, subject="s")
        s.add(thread)
        s.flush()
        msg = Message(company_id=company.id, user_id=user.id, thread_id=thread.id,
                      dedup_key=uuid.uuid4().hex, direction="outgoing", raw_sha256="0" * 64)
        s.add(msg)
        s.flush()
        return msg.id
