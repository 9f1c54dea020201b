"""SPEC §5.10 bounces, on SQLite and PostgreSQL: a DSN of a message the user sent joins
that message's thread and marks the failed recipient ``bouncing`` on its person (API,
Mail page); a later message from the address clears it.

End to end with real servers: Alice sends through her provider (the test Postfix, AUTH
against the test Dovecot) to an address that does not exist, with her Smart Bcc address
in Bcc — Postfix relays the copy to ``bccd serve`` and delivers its own DSN (RFC 3464)
into her INBOX, which ``bccd imap sync --once`` brings in. And a DSN she forwards to her
Smart Bcc address does the same."""

from __future__ import annotations

import email.utils
import itertools
import smtplib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.automated import DATE, SHAPES
from tests.support.dovecot import Dovecot
from tests.support.dovecot import available as dovecot_available
from tests.support.linking_world import Tenant
from tests.support.server import BccdServer
from tests.support.submission import UNDELIVERABLE_DOMAIN, Submission
from tests.support.submission import available as postfix_available
from tests.support.wait import wait_until

pytestmark = pytest.mark.spec("5.10")

_n = itertools.count(1)


def later(raw: bytes, when: str = "Fri, 27 Nov 2026 09:00:00 +0000") -> bytes:
    return raw.replace(f"Date: {DATE}".encode(), f"Date: {when}".encode(), 1)


def person_of(srv: BccdServer, slug: str, email: str) -> dict[str, Any]:
    return next(p for p in srv.cli("person", "list", "--company", slug) if email in p["emails"])


def test_a_forwarded_dsn_marks_the_person_bouncing_until_they_write(srv: BccdServer) -> None:
    t = Tenant(srv, "bounce-fwd")
    bob = f"bob@client-{t.slug}.test"
    mid = f"<q42-{uuid.uuid4().hex[:8]}@{t.domain}>"
    assert t.send(t.mail(to=f"Bob <{bob}>", subject="Quote #42", message_id=mid))[0] == 250
    dsn = SHAPES["postfix_shaped_dsn"].build(bob, t.alice["email"], in_reply_to=mid)
    assert t.forward("alice", dsn)[0] == 250

    [thread] = t.threads()                       # the DSN joined Alice's thread
    assert thread["messages"] == 2 and thread["category"] == "person"
    bouncing = person_of(srv, t.slug, bob)["bouncing"]
    assert [(b["email"], b["reason"]) for b in bouncing] == [
        (bob, "5.1.1 smtp; 550 5.1.1 The email account that you tried to reach does not exist")]
    with t.api() as api:
        detail = api.get(f"/threads/{thread['thread_id']}").json()
        assert [m["category"] for m in detail["messages"]] == ["person", "bounce"]
        [person_link] = [lk for lk in detail["links"] if lk["kind"] == "person"]
        assert person_link["bouncing"] is True
    with t.page() as page:
        html = page.get(f"/mail/threads/{thread['thread_id']}").text
        assert "bouncing" in html and 'class="badge person bouncing"' in html

    # a message from Bob written before the bounce does not clear it; a later one does
    assert t.forward("alice", SHAPES["customer_mail"].build(bob, t.alice["email"]).replace(
        f"Date: {DATE}".encode(), b"Date: Wed, 25 Nov 2026 09:00:00 +0000"))[0] == 250
    assert person_of(srv, t.slug, bob)["bouncing"] != []
    assert t.forward("alice", later(SHAPES["customer_mail"].build(bob, t.alice["email"])))[0] == 250
    assert person_of(srv, t.slug, bob)["bouncing"] == []


def test_a_dsn_of_someone_elses_message_marks_nobody(srv: BccdServer) -> None:
    t = Tenant(srv, "backscatter")
    bob = f"bob@client-{t.slug}.test"
    t.person("Bob", bob)
    # backscatter: the returned message is not Alice's and names no conversation of hers
    dsn = SHAPES["postfix_shaped_dsn"].build(bob, "someone@else.test", in_reply_to="<x@else.test>")
    assert t.forward("alice", dsn)[0] == 250
    assert person_of(srv, t.slug, bob)["bouncing"] == []
    [thread] = t.threads()
    assert (thread["category"], thread["link_state"], thread["links"]) == ("bounce", "automated", [])


# ---------------------------------------------------------------- real Postfix, real IMAP
@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    if not dovecot_available():
        pytest.skip("dovecot is not installed")
    with Dovecot(sasl_socket=True) as server:
        yield server


@pytest.fixture(scope="module")
def provider(dovecot: Dovecot, srv: BccdServer) -> Iterator[Submission]:
    """Alice's provider: relays everything but its own domain to ``bccd serve``."""
    if not postfix_available():
        pytest.skip("postfix is not installed or we are not root")
    with Submission(dovecot, srv.smtp_port) as sub:
        yield sub


@pytest.mark.slow
def test_a_real_postfix_dsn_synced_from_the_inbox_joins_the_thread_and_marks_bouncing(
        srv: BccdServer, dovecot: Dovecot, provider: Submission,
        monkeypatch: pytest.MonkeyPatch) -> None:
    n = next(_n)
    slug = f"dsn-{n}-{uuid.uuid4().hex[:6]}"
    alice = dovecot.add_user(f"alice{n}{slug[-6:]}@mail.test", "alice-Pa55")
    srv.cli("company", "create", "Dsn", "--slug", slug)
    user = srv.cli("user", "create", alice, "--company", slug)
    gone = f"nobody{n}@{UNDELIVERABLE_DOMAIN}"
    srv.cli("person", "create", "--company", slug, "--name", "Nobody", "--email", gone)
    mid = f"<real-{uuid.uuid4().hex}@mail.test>"
    raw = (f"From: Alice <{alice}>\r\nTo: <{gone}>\r\nSubject: Proposal\r\n"
           f"Date: Thu, 26 Nov 2026 09:00:00 +0000\r\nMessage-ID: {mid}\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHere it is.\r\n").encode()
    with smtplib.SMTP(provider.host, provider.port, timeout=30) as c:
        c.starttls(context=provider.ssl_context())
        c.login(alice, "alice-Pa55")
        assert c.sendmail(alice, [gone, user["bcc_address"]], raw) == {}

    def filed() -> list[Any]:
        return list(srv.cli("mail", "list", alice))

    wait_until(lambda: len(filed()) == 1, timeout=60, what="the Smart Bcc copy relayed by Postfix")
    dsn = provider.bounce_for(mid, users=[alice], timeout=60)
    assert b"report-type=delivery-status" in dsn
    monkeypatch.setenv("ALICE_IMAP_PW", "alice-Pa55")
    added = srv.cli("imap", "add", alice, "--host", "127.0.0.1", "--port", str(dovecot.port),
                    "--security", "starttls", "--username", alice,
                    "--password-env", "ALICE_IMAP_PW", "--ca-file", dovecot.ca_file,
                    "--folders", "INBOX")
    srv.cli("imap", "sync", "--account", str(added["id"]), "--once")

    [thread] = filed()
    shown = srv.cli("mail", "show", str(thread["thread_id"]))
    assert [(m["direction"], m["category"]) for m in shown["messages"]] == [
        ("outgoing", "person"), ("incoming", "bounce")]
    assert shown["messages"][1]["sources"] == ["imap"]
    assert thread["category"] == "person" and {lk["kind"] for lk in thread["links"]} == {"person"}
    [bouncing] = person_of(srv, slug, gone)["bouncing"]
    assert bouncing["email"] == gone and bouncing["reason"].startswith("5.1.1")

    # Nobody writes later (a message in the INBOX): no longer bouncing
    written = email.utils.formatdate(time.time() + 60)
    dovecot.append(alice, (f"From: Nobody <{gone}>\r\nTo: {alice}\r\nSubject: Re: Proposal\r\n"
                           f"Date: {written}\r\nMessage-ID: <back-{n}@x.test>"
                           f"\r\nIn-Reply-To: {mid}\r\n\r\nI am back.\r\n").encode())
    srv.cli("imap", "sync", "--account", str(added["id"]), "--once")
    assert person_of(srv, slug, gone)["bouncing"] == []
