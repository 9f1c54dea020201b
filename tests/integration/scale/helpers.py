"""Helpers for the tests of several ``bccd serve`` instances ("hosts") on one PostgreSQL:
each host has its own data directory — nothing is shared but the database URL and
``security.secret_key`` — plus SQL, HTTP and lock-watching conveniences."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from tests.support.server import BccdServer

T = TypeVar("T")
ALICE = "alice@acme.test"
SECRET = "scale-test-secret-key-shared-by-every-host"
SHARED = {"security": {"secret_key": SECRET}}  # what the hosts share besides the database


def hosts(make_server: Callable[..., BccdServer], pg_url: str, n: int = 2,
          overrides: dict[str, dict[str, Any]] | None = None, *, start: bool = True
          ) -> tuple[list[BccdServer], dict[str, Any]]:
    """``n`` instances on ``pg_url`` (migrated, with user alice), each with its own data
    directory; started unless ``start`` is False."""
    sections = {**SHARED, **(overrides or {})}
    servers = [make_server(sections, database_url=pg_url, start=False) for _ in range(n)]
    servers[0].cli("db", "upgrade", json_out=False)
    alice = servers[0].setup_user(ALICE)
    if start:
        for srv in servers:
            srv.start()
    return servers, alice


def reconfigure(srv: BccdServer, **sections: dict[str, Any]) -> None:
    from tests.support.server import write_config

    for name, values in sections.items():
        srv.sections.setdefault(name, {}).update(values)
    write_config(srv.config, srv.sections)


def blob_files(srv: BccdServer) -> list[Path]:
    root = Path(srv.sections["storage"]["data_dir"]) / "blobs"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@contextmanager
def pg(pg_url: str) -> Iterator[Connection]:
    """A connection of its own (autocommit unless the caller begins)."""
    eng = create_engine(pg_url)
    try:
        with eng.connect() as conn:
            yield conn
    finally:
        eng.dispose()


def rows(pg_url: str, sql: str, **params: Any) -> list[Any]:
    with pg(pg_url) as conn:
        return list(conn.execute(text(sql), params).all())


def scalar(pg_url: str, sql: str, **params: Any) -> Any:
    return rows(pg_url, sql, **params)[0][0]


def lock_waiters(pg_url: str) -> int:
    """Sessions of this database waiting for a lock (others share the server)."""
    return int(scalar(pg_url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                              "current_database() AND wait_event_type = 'Lock'"))


def blobs_intact(pg_url: str) -> list[str]:
    """Every attachment's blob, read back from the database and hashed: the digests that
    are missing or damaged."""
    bad = []
    for (digest,) in rows(pg_url, "SELECT DISTINCT sha256 FROM attachments"):
        chunks = rows(pg_url, "SELECT data FROM blob_chunks WHERE sha256 = :d ORDER BY n", d=digest)
        if hashlib.sha256(b"".join(bytes(c[0]) for c in chunks)).hexdigest() != digest:
            bad.append(digest)
    return bad


def api(srv: BccdServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{srv.http_url}/api/v1", timeout=60,
                        headers={"Authorization": f"Bearer {token}"})


def attachments(srv: BccdServer, token: str) -> list[dict[str, Any]]:
    """Every attachment of every thread the user sees, through the API."""
    out = []
    with api(srv, token) as http:
        offset: Any = 0
        while offset is not None:
            page = http.get("/threads", params={"offset": offset, "limit": 100}).json()
            for t in page["threads"]:
                for m in http.get(f"/threads/{t['thread_id']}").json()["messages"]:
                    out.extend(m["attachments"])
            offset = page["next_offset"]
    return out


@contextmanager
def mail_page(srv: BccdServer, token: str) -> Iterator[httpx.Client]:
    """An httpx client signed in to the instance's Mail page (the API-token form)."""
    with httpx.Client(base_url=srv.http_url, timeout=60) as http:
        login = http.get("/mail/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', login.text)
        assert nonce, login.text
        r = http.post("/mail/login", data={"nonce": nonce.group(1), "token": token})
        assert r.status_code == 303, r.text
        yield http
