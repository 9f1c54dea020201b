"""Issue #17, item 11: a name with CR/LF used to make adding an alternate answer ``500``
(the confirmation mail's ``To`` header could not be built). Names are refused where they
are set — user, company, person and organization names, by the CLI (one line, exit 1)
and the API (``422`` naming the field) — and a bad name already in the database no
longer breaks the confirmation mail, nor reaches a header."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import httpx
import pytest

from tests.support.capture_smtp import CaptureSmtp
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("9")

BAD = ["Eve\r\nBcc: victim@else.test", "Eve\nX-Injected: 1", "Eve\rX", "Eve\x00", "Eve\x1b[31m",
       "Eve\x85next", "Eve\u2028next"]


@pytest.fixture
def capture() -> CaptureSmtp:
    with CaptureSmtp() as cap:
        yield cap


def _api(srv: BccdServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{srv.http_url}/api/v1",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.mark.parametrize("name", [n for n in BAD if "\x00" not in n])  # argv cannot hold NUL
def test_the_cli_refuses_a_user_or_company_name_with_control_characters(
        make_server: Callable[..., BccdServer], name: str) -> None:
    srv = make_server(start=False)
    assert srv.cli_proc("company", "create", "Acme", "--slug", "acme").returncode == 0
    r = srv.cli_proc("user", "create", "eve@acme.test", "--company", "acme", "--name", name)
    assert r.returncode == 1, r
    assert r.stderr.count("\n") == 1 and "name" in r.stderr and "control" in r.stderr, r.stderr
    r = srv.cli_proc("company", "create", name, "--slug", "other")
    assert r.returncode == 1 and "name" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = srv.cli_proc("person", "create", "--company", "acme", "--name", name, "--email",
                     "dana@client.test")
    assert r.returncode == 1 and "name" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert srv.cli("user", "list") == []


def test_the_admin_api_refuses_names_with_control_characters(server: BccdServer) -> None:
    admin = server.setup_user("carol@acme.test", admin=True)
    with _api(server, admin["api_token"]) as api:
        for name in BAD:
            r = api.post("/admin/users", json={"email": "eve@acme.test", "name": name})
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"].startswith("name:"), r.json()
            r = api.put("/admin/persons/p1", json={"name": name, "emails": ["dana@client.test"]})
            assert r.status_code == 422 and r.json()["detail"].startswith("name:"), r.text
            r = api.put("/admin/organizations/o1", json={"name": name})
            assert r.status_code == 422 and r.json()["detail"].startswith("name:"), r.text
        # a tab or an accent is a name, not an attack
        r = api.post("/admin/users", json={"email": "eve@acme.test", "name": "Ève Dupont"})
        assert r.status_code == 201, r.text


def test_a_bad_name_already_stored_does_not_break_adding_an_alternate(
        make_server: Callable[..., BccdServer], capture: CaptureSmtp) -> None:
    srv = make_server({"outbound": {"port": capture.port}})
    alice = srv.setup_user("alice@acme.test")
    db = sqlite3.connect(srv.dir / "var" / "bccd.sqlite3")
    with db:
        db.execute("UPDATE users SET name = ? WHERE email = ?",
                   ("Alice\r\nBcc: victim@else.test", "alice@acme.test"))
    db.close()
    with _api(srv, alice["api_token"]) as api:
        r = api.post("/me/alternates", json={"email": "alice@home.test"})
    assert r.status_code == 201, r.text
    sent = capture.wait_for(1, timeout=30)[0]
    assert sent.rcpt_tos == ["alice@home.test"]
    head = sent.data.split(b"\r\n\r\n", 1)[0]
    assert b"victim@else.test" not in head
    assert not any(line.lower().startswith(b"bcc:") for line in head.split(b"\r\n"))
    assert sent.message()["To"].addresses[0].addr_spec == "alice@home.test"
