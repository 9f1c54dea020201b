"""Attack: plant authentic-looking customer mail in a shared thread by "forwarding" it
(issue #17 item 5; SPEC §4.3: a recovered original carries no verdict of its own —
``auth.verdict = "forwarded"``, the forwarder's verdict kept as the forwarding's — and is
shown as "forwarded by <user>", never as authenticated mail from its original sender).

A user writes a forwarded-message block naming a customer as the sender ("we accept,
wire the money to …"), DKIM-signs it with their own domain (as their mail server does)
and Bccs it. bccd files the recovered original as incoming mail from the customer and
showed the *forwarder's* verdict beside it (``auth: pass``) to every colleague who may
see the thread. Real SMTP into ``auth.mode = "dmarc"`` with a loopback DNS server, then
the CLI's ``mail show``, the JSON API and the Mail page, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import JSON, column, insert, select, table, text

from bccd.store.db import Database
from bccd.store.migrate import upgrade
from bccd.store.models import Message, UTCDateTime, utcnow
from tests.integration.security.two_companies import Companies
from tests.support.authkit import Key, corpus_keys, sign
from tests.support.dnsserver import DnsTestServer
from tests.support.linking_world import server_on
from tests.support.mail import send
from tests.support.server import BccdServer

pytestmark = pytest.mark.spec("4.3")

CUSTOMER = "ceo@customer.example"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        dns: DnsTestServer) -> Iterator[BccdServer]:
    admin = request.getfixturevalue("pg_admin_url") if request.param == "postgresql" else None
    overrides = {"auth": {"mode": "dmarc"},
                 "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 1.0}}
    with server_on(request.param, tmp_path_factory.mktemp(request.param), admin,
                   overrides) as server:
        yield server


def _forward(c: Companies, key: Key) -> bytes:
    alice, dom = c.email("alice"), c.domains["acme"]
    text = (
        "FYI, logging this one.\r\n\r\n"
        "---------- Forwarded message ---------\r\n"
        f"From: Carl Customer <{CUSTOMER}>\r\n"
        "Date: Wed, Nov 25, 2026 at 3:14 PM\r\n"
        "Subject: We accept your offer\r\n"
        f"To: Alice <{alice}>\r\n\r\n\r\n"
        "We accept the offer. Please wire the deposit to IBAN XX00 EVIL 0000.\r\n"
        "Carl\r\n")
    headers = [f"From: Alice <{alice}>", f"To: {c.users['alice']['bcc_address']}",
               "Subject: Fwd: We accept your offer", "Date: Thu, 26 Nov 2026 09:12:44 +0100",
               f"Message-ID: <fwd-{c.slugs['acme']}@{dom}>", "MIME-Version: 1.0",
               "Content-Type: text/plain; charset=utf-8"]
    raw = ("\r\n".join(headers) + "\r\n\r\n" + text).encode()
    return sign(raw, key, dom, "sel")


def test_a_forwarded_original_never_carries_the_forwarders_verdict(
        srv: BccdServer, dns: DnsTestServer) -> None:
    c = Companies(srv, "fwd")
    key = corpus_keys()["rsa2048"]
    dom = c.domains["acme"]
    dns.add_txt(f"sel._domainkey.{dom}", key.record)
    dns.add_txt(f"_dmarc.{dom}", "v=DMARC1; p=reject")
    dns.add_txt(dom, "v=spf1 ip4:127.0.0.1 -all")
    c.person("carl", "Carl Customer", CUSTOMER)
    c.item("deal", "deal", "Customer Deal", person="carl")
    c.share("alice")
    code, text = send(srv.smtp_port, c.users["alice"]["bcc_address"], _forward(c, key),
                      mail_from=c.email("alice"))
    assert code == 250, text

    [row] = srv.cli("mail", "list", c.email("bob"))  # shared, linked: the colleague sees it
    [msg] = srv.cli("mail", "show", str(row["thread_id"]))["messages"]
    assert (msg["direction"], msg["from"], msg["forwarded_by"]) == (
        "incoming", CUSTOMER, c.email("alice"))
    auth = msg["auth"]
    assert auth["verdict"] == "forwarded", auth
    assert (auth["dkim"], auth["spf"], auth["dmarc"]) == ("none", "none", "none"), auth
    assert auth["signing_domains"] == [] and auth["authentication_results"] == "", auth
    fwd = auth["forwarding"]  # the forwarder's own verdict, kept as the forwarding's
    assert (fwd["verdict"], fwd["dkim"], fwd["dmarc"], fwd["by"]) == (
        "pass", "pass", "pass", c.email("alice")), fwd
    assert dom in fwd["signing_domains"] and "dkim=pass" in fwd["authentication_results"]

    with c.api("bob") as api:
        detail = api.get(f"/threads/{row['thread_id']}").json()
    [m] = detail["messages"]
    assert m["auth"]["verdict"] == "forwarded" and m["auth"]["forwarding"]["verdict"] == "pass"
    with c.page("bob") as http:
        page = http.get(f"/mail/threads/{row['thread_id']}").text
    assert f"forwarded by {c.email('alice')}" in page
    assert "auth: pass" not in page and "verdict-pass" not in page, page


def test_originals_planted_before_the_upgrade_lose_the_forwarders_verdict(db_url: str) -> None:
    """Revision 0004 gives forwarded originals already stored the ``forwarded`` verdict;
    the user's own mail that they later forwarded (From one of their addresses) keeps
    the verdict it was filed with."""
    upgrade(db_url, "0006")  # the revision before 0004 in the chain
    db = Database(db_url)
    try:
        with db.transaction() as s:  # the tables as they were then: no ORM models
            s.execute(text("INSERT INTO companies (slug, name, create_unknown_contacts, created_at)"
                           " VALUES ('acme', 'Acme', true, CURRENT_TIMESTAMP)"))
            company_id = s.execute(text("SELECT id FROM companies")).scalar_one()
            s.execute(text(
                "INSERT INTO users (company_id, email, name, is_admin, api_token_hash, bcc_token,"
                " sharing_default, linking_mode, email_links, disabled, created_at) VALUES (:c,"
                " 'alice@acme.test', '', false, 'h', 'abcdefghijklmnop', 'private', 'auto', 'app',"
                " false, CURRENT_TIMESTAMP)"), {"c": company_id})
            user_id = s.execute(text("SELECT id FROM users")).scalar_one()
            s.execute(text(
                "INSERT INTO threads (company_id, owner_id, subject, visibility, archived,"
                " manual_items, last_message_at, created_at) VALUES (:c, :u, 'x', 'private', false,"
                " false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"c": company_id, "u": user_id})
            thread_id = s.execute(text("SELECT id FROM threads")).scalar_one()
            passed = {"dkim": "pass", "spf": "pass", "dmarc": "pass", "verdict": "pass",
                      "dkim_domains": ["acme.test"], "results_header": "bccd.test; dkim=pass"}
            old = table("messages", column("company_id"), column("user_id"),
                        column("thread_id"), column("dedup_key"), column("direction"),
                        column("from_addr"), column("from_name"), column("subject"),
                        column("text_body"), column("html_body"), column("raw_size"),
                        column("raw_sha256"), column("forwarded_by"), column("auth", JSON),
                        column("created_at", UTCDateTime()))
            for key, frm in (("planted", CUSTOMER), ("own", "alice@acme.test")):
                s.execute(insert(old).values(
                    company_id=company_id, user_id=user_id, thread_id=thread_id,
                    dedup_key=key, direction="incoming", from_addr=frm, from_name="",
                    subject=key, text_body="", html_body="", raw_size=0, raw_sha256="0" * 64,
                    forwarded_by="alice@acme.test", auth=passed, created_at=utcnow()))
        upgrade(db_url)
        with db.read() as s:
            auths = {k: a for k, a in s.execute(select(Message.dedup_key, Message.auth))}
    finally:
        db.dispose()
    assert auths["planted"]["verdict"] == "forwarded" and auths["planted"]["dkim"] == "none"
    assert auths["planted"]["forwarding"] == {**passed, "by": "alice@acme.test"}
    assert auths["own"] == passed
