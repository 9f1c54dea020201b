"""A tenant per test on a shared ``bccd serve``: linking tests give each case its own
company (unique slug and user domain), so many cases share one server process without
seeing each other's data. Everything goes through the CLI (in-process) and real SMTP.

``servers(kind, tmp)`` starts a server on SQLite or on a fresh PostgreSQL database
(migrated with ``db upgrade`` first, as an operator would)."""

from __future__ import annotations

import email
import itertools
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bccd.config import load_settings
from bccd.linking import linkstate
from tests.support import pg
from tests.support.mail import make_message, send
from tests.support.server import BccdServer

_seq = itertools.count(1)


@contextmanager
def server_on(kind: str, tmp: Path, admin_url: str | None = None,
              overrides: dict[str, dict[str, Any]] | None = None) -> Iterator[BccdServer]:
    """A started ``bccd serve`` on ``sqlite`` or ``postgresql`` (needs ``admin_url``)."""
    dbname = None
    if kind == "sqlite":
        srv = BccdServer(tmp, overrides)
    else:
        assert admin_url is not None
        url, dbname = pg.fresh_database(admin_url)
        srv = BccdServer(tmp, overrides,
                         database_url=url.replace("postgresql://", "postgresql+psycopg://"))
        srv.cli("db", "upgrade")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if dbname is not None and admin_url is not None:
            pg.drop_database(admin_url, dbname)


class Tenant:
    """One company with users, persons and items on a shared server."""

    def __init__(self, srv: BccdServer, label: str = "t") -> None:
        self.srv = srv
        n = next(_seq)
        label = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:20] or "t"
        self.slug = f"{label}-{n}-{uuid.uuid4().hex[:6]}"
        self.domain = f"{self.slug}.test"
        srv.cli("company", "create", self.slug.title(), "--slug", self.slug)
        self.users: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, int] = {}          # name → person or item id
        self.kinds: dict[str, str] = {}        # name → person | deal | lead | project
        self.addresses: dict[str, str] = {}    # item name → its Smart Bcc address
        self.alice = self.user("alice")

    # -- setup --------------------------------------------------------------------
    def user(self, local: str, *, admin: bool = False, **settings: str) -> dict[str, Any]:
        email = f"{local}@{self.domain}"
        args = ["user", "create", email, "--company", self.slug, "--name", local.title()]
        if admin:
            args.append("--admin")
        u = dict(self.srv.cli(*args))
        self.users[local] = u
        if settings:
            self.set_user(local, **settings)
        return u

    def set_user(self, local: str, **settings: str) -> None:
        args = ["user", "set", self.users[local]["email"]]
        for k, v in settings.items():
            args += [f"--{k.replace('_', '-')}", v]
        self.srv.cli(*args)

    def company_set(self, create_unknown_contacts: str) -> None:
        self.srv.cli("company", "set", self.slug, "--create-unknown-contacts",
                     create_unknown_contacts)

    def person(self, name: str, *emails: str, owner: str | None = None,
               visible_to: str | None = None, org: str | None = None) -> dict[str, Any]:
        args = ["person", "create", "--company", self.slug, "--name", name]
        for e in emails:
            args += ["--email", e]
        if owner:
            args += ["--owner", self.users[owner]["email"]]
        if visible_to:
            args += ["--visible-to", visible_to]
        if org:
            args += ["--org", org]
        out = dict(self.srv.cli(*args))
        self.ids[name], self.kinds[name] = out["id"], "person"
        return out

    def item(self, kind: str, name: str, person: str | None = None, status: str = "open",
             owner: str | None = None, visible_to: str | None = None) -> dict[str, Any]:
        args = [kind, "create", "--company", self.slug, "--title", name, "--status", status]
        if person:
            args += ["--person", str(self.ids[person])]
        if owner:
            args += ["--owner", self.users[owner]["email"]]
        if visible_to:
            args += ["--visible-to", visible_to]
        out = dict(self.srv.cli(*args))
        self.ids[name], self.kinds[name] = out["id"], kind
        self.addresses[name] = out["bcc_address"]
        return out

    def block(self, local: str, pattern: str) -> None:
        self.srv.cli("block", "add", self.users[local]["email"], pattern)

    # -- mail ---------------------------------------------------------------------
    def mail(self, local: str = "alice", **kw: Any) -> bytes:
        kw.setdefault("frm", f"{local.title()} <{local}@{self.domain}>")
        return make_message(**kw)

    def send(self, raw: bytes, local: str = "alice", *, to: list[str] | None = None
             ) -> tuple[int, bytes]:
        rcpts = to if to is not None else [self.users[local]["bcc_address"]]
        return send(self.srv.smtp_port, rcpts, raw, mail_from=f"{local}@{self.domain}")

    def forward(self, local: str, original: bytes) -> tuple[int, bytes]:
        """``local`` forwards ``original`` (attached) to their Smart Bcc address: it is filed
        as the original incoming message, with the original's Message-ID (SPEC §4.3)."""
        email_ = self.users[local]["email"]
        m = EmailMessage()
        m["From"] = f"{local.title()} <{email_}>"
        m["To"] = self.users[local]["bcc_address"]
        m["Subject"] = "Fwd: " + str(email.message_from_bytes(original)["Subject"])
        m["Message-ID"] = f"<fwd-{uuid.uuid4().hex}@{self.domain}>"
        m.set_content("Forwarding this for the CRM.\n")
        m.add_attachment(email.message_from_bytes(original))
        raw = m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        return self.send(raw, local)

    def api(self, local: str = "alice") -> httpx.Client:
        """The JSON API as this user (their API token)."""
        return httpx.Client(base_url=f"{self.srv.http_url}/api/v1", timeout=30, headers={
            "Authorization": f"Bearer {self.users[local]['api_token']}"})

    @contextmanager
    def page(self, local: str = "alice") -> Iterator[httpx.Client]:
        """The Mail page, signed in as this user (the API-token sign-in form)."""
        with httpx.Client(base_url=self.srv.http_url, timeout=30) as http:
            login = http.get("/mail/login")
            nonce = re.search(r'name="nonce" value="([^"]+)"', login.text)
            assert nonce, login.text
            r = http.post("/mail/login", data={"nonce": nonce.group(1),
                                               "token": self.users[local]["api_token"]})
            assert r.status_code == 303, r.text
            yield http

    def states(self, local: str = "alice", *filters: str) -> dict[str, str]:
        """subject → link_state of the threads ``local`` sees."""
        return {th["subject"]: th["link_state"] for th in self.threads(local, *filters)}

    def threads(self, local: str = "alice", *filters: str) -> list[dict[str, Any]]:
        return list(self.srv.cli("mail", "list", self.users[local]["email"], *filters))

    def thread(self, local: str = "alice") -> dict[str, Any]:
        found = self.threads(local)
        assert len(found) == 1, found
        return found[0]

    def show(self, thread_id: int) -> dict[str, Any]:
        return dict(self.srv.cli("mail", "show", str(thread_id)))

    def persons(self) -> dict[str, dict[str, Any]]:
        """email → person record."""
        out = {}
        for p in self.srv.cli("person", "list", "--company", self.slug):
            for e in p["emails"]:
                out[e] = p
        return out

    def named(self, links: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        """Links as (kind, name, how) with the names this tenant gave its entities."""
        names = {(self.kinds[n], i): n for n, i in self.ids.items()}
        return {(lk["kind"], names.get((lk["kind"], lk["id"]), f"#{lk['id']}"), lk["how"])
                for lk in links}

    def named_suggestions(self, sugg: list[dict[str, Any]]) -> set[tuple[str, str]]:
        names = {(self.kinds[n], i): n for n, i in self.ids.items()}
        return {(s["kind"], names.get((s["kind"], s["id"]), f"#{s['id']}")) for s in sugg}


def sql(srv: BccdServer, query: str, **params: Any) -> list[Any]:
    """Read the server's database directly (counters, row counts) — tests only."""
    settings = load_settings(str(srv.config))
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query), params).all())
    finally:
        engine.dispose()


def dropped_count(srv: BccdServer, email: str) -> int:
    rows = sql(srv, "SELECT c.value FROM counters c JOIN users u ON u.id = c.user_id "
                    "WHERE u.email = :e AND c.name = 'dropped_blocked'", e=email)
    return int(rows[0][0]) if rows else 0


def message_count(srv: BccdServer, email: str) -> int:
    rows = sql(srv, "SELECT count(*) FROM messages m JOIN users u ON u.id = m.user_id "
                    "WHERE u.email = :e", e=email)
    return int(rows[0][0])


def stale_link_states(srv: BccdServer) -> list[tuple[int, str, str]]:
    """Threads whose stored ``link_state`` is not what the rule makes of their stored
    links, suggestions and owner (``linkstate.stale``) — empty when the state is true."""
    settings = load_settings(str(srv.config))
    engine = create_engine(settings.database_url)
    try:
        with Session(engine) as s:
            return linkstate.stale(s)
    finally:
        engine.dispose()
