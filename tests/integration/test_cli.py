"""SPEC §8: every command's JSON shape and its exit codes (0, 1 + one line, 2 usage)."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.server import BccdServer, CliError

pytestmark = pytest.mark.spec("8")


@pytest.fixture
def srv(make_server, db_url: str) -> BccdServer:
    s = make_server(database_url=db_url, start=False)
    s.cli("db", "upgrade")
    return s


def test_company_and_user_creation_shapes(srv: BccdServer) -> None:
    c = srv.cli("company", "create", "Acme Inc")
    assert c == {"id": c["id"], "slug": "acme-inc", "name": "Acme Inc"}
    u = srv.cli("user", "create", "Alice@Acme.TEST", "--company", "acme-inc", "--name", "Alice")
    assert set(u) == {"id", "email", "bcc_address", "api_token"}
    assert u["email"] == "alice@acme.test"
    m = re.fullmatch(r"acme-inc\+([a-z2-7]+)@bcc\.localhost", u["bcc_address"])
    assert m and len(m.group(1)) >= 12
    shown = srv.cli("user", "show", "alice@acme.test")
    assert {k: shown[k] for k in ("id", "email", "company", "bcc_address", "sharing_default",
                                  "linking_mode", "alternates", "blocked")} == {
        "id": u["id"], "email": "alice@acme.test", "company": "acme-inc",
        "bcc_address": u["bcc_address"], "sharing_default": "private", "linking_mode": "auto",
        "alternates": [], "blocked": []}
    assert [x["email"] for x in srv.cli("user", "list", "--company", "acme-inc")] == ["alice@acme.test"]


def test_api_token_is_stored_hashed(srv: BccdServer) -> None:
    from sqlalchemy import create_engine, text

    srv.cli("company", "create", "Acme", "--slug", "acme")
    u = srv.cli("user", "create", "alice@acme.test", "--company", "acme")
    url = srv.sections.get("database", {}).get("url") or f"sqlite:///{srv.dir / 'var' / 'bccd.sqlite3'}"
    eng = create_engine(url)
    with eng.connect() as conn:
        stored = conn.execute(text("SELECT api_token_hash FROM users")).scalar_one()
    eng.dispose()
    assert u["api_token"] not in stored and len(stored) == 64


def test_rotate_address_and_settings(srv: BccdServer) -> None:
    srv.cli("company", "create", "Acme", "--slug", "acme")
    u = srv.cli("user", "create", "alice@acme.test", "--company", "acme")
    rotated = srv.cli("user", "rotate-address", "alice@acme.test")
    assert set(rotated) == {"bcc_address"} and rotated["bcc_address"] != u["bcc_address"]
    shown = srv.cli("user", "set", "alice@acme.test", "--sharing", "shared", "--linking", "manual")
    assert (shown["sharing_default"], shown["linking_mode"]) == ("shared", "manual")
    assert srv.cli("user", "disable", "alice@acme.test")["disabled"] is True


def test_person_and_item_shapes(srv: BccdServer) -> None:
    srv.cli("company", "create", "Acme", "--slug", "acme")
    p = srv.cli("person", "create", "--company", "acme", "--name", "Bob", "--email", "Bob@Client.test",
                "--email", "bob@home.test", "--org", "Client Ltd")
    assert p["emails"] == ["bob@client.test", "bob@home.test"] and p["organization_id"]
    p2 = srv.cli("person", "add-email", str(p["id"]), "robert@client.test")
    assert p2["emails"][-1] == "robert@client.test"
    assert [x["id"] for x in srv.cli("person", "list", "--company", "acme")] == [p["id"]]
    for kind, closed in (("deal", "won"), ("lead", "archived"), ("project", "closed")):
        it = srv.cli(kind, "create", "--company", "acme", "--title", f"A {kind}", "--person", str(p["id"]))
        assert it["kind"] == kind and it["status"] == "open"
        assert re.fullmatch(rf"acme\+{kind}-{it['id']}-[a-z2-7]{{10,}}@bcc\.localhost", it["bcc_address"])
        assert srv.cli(kind, "set", str(it["id"]), "--status", closed)["status"] == closed
        assert [x["id"] for x in srv.cli(kind, "list", "--company", "acme")] == [it["id"]]


def test_errors_exit_1_with_one_line(srv: BccdServer) -> None:
    srv.cli("company", "create", "Acme", "--slug", "acme")
    cases = [
        (["company", "create", "Acme", "--slug", "acme"], "already exists"),
        (["user", "create", "not-an-address", "--company", "acme"], "is not an email address"),
        (["user", "create", "a@b.test", "--company", "nope"], "no company 'nope'"),
        (["user", "show", "ghost@acme.test"], "no user ghost@acme.test"),
        (["person", "add-email", "999", "x@y.test"], "no person 999"),
        (["company", "create", "X", "--slug", "Bad Slug"], "must be lowercase"),
    ]
    for argv, needle in cases:
        r = srv.cli_proc(*argv, "--json")
        assert r.returncode == 1, (argv, r.stderr)
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (argv, r.stderr)


def test_duplicate_person_email_in_a_company_is_refused(srv: BccdServer) -> None:
    srv.cli("company", "create", "Acme", "--slug", "acme")
    srv.cli("company", "create", "Globex", "--slug", "globex")
    srv.cli("person", "create", "--company", "acme", "--name", "Bob", "--email", "bob@client.test")
    with pytest.raises(CliError, match="already belongs"):
        srv.cli("person", "create", "--company", "acme", "--name", "B2", "--email", "BOB@client.test")
    other = srv.cli("person", "create", "--company", "globex", "--name", "Bob", "--email", "bob@client.test")
    assert other["emails"] == ["bob@client.test"]


def test_usage_errors_exit_2(srv: BccdServer) -> None:
    for argv in (["user"], ["user", "create"], ["deal", "set", "1", "--status", "won-ish"], ["frobnicate"]):
        r = srv.cli_proc(*argv)
        assert r.returncode == 2, (argv, r.stderr)


def test_json_output_is_one_document(srv: BccdServer) -> None:
    r = srv.cli_proc("company", "create", "Acme", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["slug"] == "acme"


@pytest.mark.spec("10")
def test_bad_config_is_refused_at_start_with_key_and_reason(srv: BccdServer) -> None:
    srv.config.write_text(srv.config.read_text() + '\n[retention]\nquarantine = "soon"\n')
    r = srv.cli_proc("serve")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == "bccd: error: retention.quarantine: expected a duration such as 90s, 15m, 72h or 30d"
