"""Two companies on one server, for the reproduced attacks: users, CRM entities with
owners and ``visible_to``, mail over real SMTP, the API and the Mail page over real HTTP.

``Companies(srv)`` creates ``acme`` (alice and bob, users; carol, admin) and ``rival``
(eve, a user) with a unique suffix, so several cases share one server. Entities are made
through the CLI (as an operator or a CRM integration would), mail through SMTP, and
everything a user sees through ``api(who)`` (Bearer token) or ``page(who)`` (a signed-in
Mail page session)."""

from __future__ import annotations

import itertools
import re
import uuid
from contextlib import closing, contextmanager
from typing import Any

import httpx

from tests.support.mail import make_message, send
from tests.support.server import BccdServer

_seq = itertools.count(1)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def sign_in(base: str, token: str) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=30)
    login = http.get("/mail/login")
    m = re.search(r'name="nonce" value="([^"]+)"', login.text)
    assert m, login.text
    r = http.post("/mail/login", data={"nonce": m.group(1), "token": token})
    assert r.status_code == 303, r.text
    return http


class Companies:
    def __init__(self, srv: BccdServer, label: str = "c") -> None:
        self.srv = srv
        tag = f"{label}{next(_seq)}-{uuid.uuid4().hex[:6]}"
        self.slugs = {"acme": f"acme-{tag}", "rival": f"rival-{tag}"}
        self.domains = {k: f"{v}.test" for k, v in self.slugs.items()}
        for slug in self.slugs.values():
            srv.cli("company", "create", slug.title(), "--slug", slug)
        self.users: dict[str, dict[str, Any]] = {}
        for who, company, admin in (("alice", "acme", False), ("bob", "acme", False),
                                    ("carol", "acme", True), ("eve", "rival", False)):
            args = ["user", "create", self.email(who, company), "--company", self.slugs[company],
                    "--name", who.title()]
            self.users[who] = dict(srv.cli(*args, *(["--admin"] if admin else [])))
        self.ids: dict[str, int] = {}

    def email(self, who: str, company: str | None = None) -> str:
        if company is None:
            company = "rival" if who == "eve" else "acme"
        return f"{who}@{self.domains[company]}"

    def share(self, who: str) -> None:
        """New threads of ``who`` are shared (the company sees them where it may)."""
        self.srv.cli("user", "set", self.email(who), "--sharing", "shared")

    # -- CRM ----------------------------------------------------------------------
    def person(self, key: str, name: str, email: str, company: str = "acme", *,
               owner: str | None = None, visible_to: str = "company") -> int:
        args = ["person", "create", "--company", self.slugs[company], "--name", name,
                "--email", email, "--visible-to", visible_to]
        if owner:
            args += ["--owner", self.email(owner)]
        self.ids[key] = int(self.srv.cli(*args)["id"])
        return self.ids[key]

    def item(self, key: str, kind: str, title: str, company: str = "acme", *,
             person: str | None = None, owner: str | None = None,
             visible_to: str = "company") -> int:
        args = [kind, "create", "--company", self.slugs[company], "--title", title,
                "--visible-to", visible_to]
        if person:
            args += ["--person", str(self.ids[person])]
        if owner:
            args += ["--owner", self.email(owner)]
        self.ids[key] = int(self.srv.cli(*args)["id"])
        return self.ids[key]

    # -- mail ---------------------------------------------------------------------
    def mail(self, who: str, to: str, subject: str, *, message_id: str | None = None) -> int:
        """``who`` Bccs a message to ``to``; → the id of the thread it was filed in."""
        raw = make_message(frm=f"{who.title()} <{self.email(who)}>", to=to, subject=subject,
                           message_id=message_id or f"<{uuid.uuid4().hex}@{self.domains['acme']}>",
                           body=f"{subject}.\n")
        assert send(self.srv.smtp_port, self.users[who]["bcc_address"], raw,
                    mail_from=self.email(who))[0] == 250
        with self.api(who) as api:
            found = [t for t in api.get("/threads", params={"q": subject}).json()["threads"]
                     if t["subject"] == subject]
        assert len(found) == 1, found
        return int(found[0]["thread_id"])

    # -- interfaces ---------------------------------------------------------------
    def api(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=f"{self.srv.http_url}/api/v1", timeout=30,
                            headers={"Authorization": f"Bearer {self.users[who]['api_token']}"})

    @contextmanager
    def page(self, who: str) -> Any:
        with closing(sign_in(self.srv.http_url, self.users[who]["api_token"])) as http:
            yield http
