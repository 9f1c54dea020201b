"""A small company for the HTTP tests: users, CRM entities made through the admin API, and
mail filed over real SMTP.

``build(srv)`` →  ``World``:

- company ``acme``: alice (user), bob (user), carol (admin); company ``other``: eve;
- CRM (carol's admin token): person "Dana Client" <dana@client.test> (``p-dana``), person
  "Finn Client" <finn@client.test> (``p-finn``); deal "Big deal" (``d-big``, Dana, visible
  to the company), deal "Secret deal" (``d-secret``, Finn, visible to its owner alice only),
  deal "Second deal" (``d-second``, no person), lead "Warm lead" (``l-warm``, no person);
- alice's mail: ``private`` (to Dana, private; HTML with a remote image, a script and an
  attachment), ``shared`` (to Dana, shared → linked to Big deal: bob may see it),
  ``secret`` (to Finn, shared → linked to Secret deal: bob may not see it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.mail import make_message, send
from tests.support.server import BccdServer

HTML = ('<html><head><script>document.title = "pwned"</script></head><body>'
        '<p style="color:#123456">Hello <b>Dana</b>,</p>'
        '<img src="{remote}" alt="tracker">'
        '<p>The <a href="https://example.com/offer">offer</a>.</p>'
        '<img src="x" onerror="document.title=\'pwned\'">'
        '</body></html>')


@dataclass
class World:
    srv: BccdServer
    tokens: dict[str, str]
    users: dict[str, dict[str, Any]]
    ids: dict[str, int] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)

    def client(self, who: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=f"{self.srv.http_url}/api/v1", headers=headers, timeout=30)


def _user(srv: BccdServer, email: str, company: str, name: str, admin: bool = False) -> dict[str, Any]:
    return srv.setup_user(email, company=company, name=name, admin=admin)


def build(srv: BccdServer, *, remote_image: str = "http://127.0.0.1:9/pixel.png") -> World:
    users = {
        "alice": _user(srv, "alice@acme.test", "acme", "Alice"),
        "bob": _user(srv, "bob@acme.test", "acme", "Bob"),
        "carol": _user(srv, "carol@acme.test", "acme", "Carol", admin=True),
        "eve": _user(srv, "eve@other.test", "other", "Eve"),
    }
    w = World(srv, {k: v["api_token"] for k, v in users.items()}, users)
    with w.client("carol") as admin:
        def put(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = admin.put(path, json=body)
            assert r.status_code == 200, r.text
            return dict(r.json())

        w.ids["dana"] = put("/admin/persons/p-dana", {"name": "Dana Client",
                                                      "emails": ["dana@client.test"]})["id"]
        w.ids["finn"] = put("/admin/persons/p-finn", {"name": "Finn Client",
                                                      "emails": ["finn@client.test"]})["id"]
        w.ids["big"] = put("/admin/deals/d-big", {"title": "Big deal",
                                                  "person_external_id": "p-dana"})["id"]
        w.ids["secret"] = put("/admin/deals/d-secret", {
            "title": "Secret deal", "person_external_id": "p-finn", "owner": "alice@acme.test",
            "visible_to": "owner"})["id"]
        w.ids["second"] = put("/admin/deals/d-second", {"title": "Second deal"})["id"]
        w.ids["warm"] = put("/admin/leads/l-warm", {"title": "Warm lead"})["id"]
    bcc = users["alice"]["bcc_address"]
    w.raw["private"] = make_message(
        frm="Alice <alice@acme.test>", to="Dana Client <dana@client.test>",
        subject="Private offer", message_id="<private@acme.test>",
        body="Hello Dana,\nthe offer.\n", html=HTML.format(remote=remote_image),
        attachments=[("offer.pdf", "application/pdf", b"%PDF-1.4 offer")])
    assert send(srv.smtp_port, bcc, w.raw["private"])[0] == 250
    srv.cli("user", "set", "alice@acme.test", "--sharing", "shared")
    w.raw["shared"] = make_message(frm="Alice <alice@acme.test>", to="dana@client.test",
                                   subject="Shared plan", message_id="<shared@acme.test>",
                                   body="The shared plan.\n")
    assert send(srv.smtp_port, bcc, w.raw["shared"])[0] == 250
    w.raw["secret"] = make_message(frm="Alice <alice@acme.test>", to="finn@client.test",
                                   subject="Secret terms", message_id="<secret@acme.test>",
                                   body="Secret terms.\n")
    assert send(srv.smtp_port, bcc, w.raw["secret"])[0] == 250
    with w.client("alice") as alice:
        for t in alice.get("/threads").json()["threads"]:
            key = {"Private offer": "private", "Shared plan": "shared",
                   "Secret terms": "secret"}[t["subject"]]
            w.threads[key] = t["thread_id"]
    assert len(w.threads) == 3
    return w
