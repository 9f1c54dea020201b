"""Attack: get mail filed as a user's own by sending it to their mailbox with their
address in From (issue #17 item 7; SPEC §7 "Direction of synced mail").

Anyone can send a message to alice's mailbox saying ``From: alice@…``. Synced over IMAP,
bccd filed it as alice's own outgoing mail — her words to the customer in the CRM — with no
check at all. Now a synced message is outgoing only when it is in the account's sent
folder (``\\Sent``) or when the provider's own ``Authentication-Results`` (an authserv-id
listed for the account with ``imap add/set --authserv-id``) say DMARC pass for its From
domain; a message elsewhere whose From claims the user is incoming and marked
``unverified_sender``. Against the real Dovecot, through ``bccd imap add`` and ``imap sync
--once``, ``mail show`` and the Mail page, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.security.two_companies import Companies
from tests.support import pg
from tests.support.dovecot import Dovecot
from tests.support.dovecot import available as dovecot_available
from tests.support.mail import make_message
from tests.support.server import BccdServer

pytestmark = pytest.mark.skipif(not dovecot_available(), reason="dovecot is not installed")

PROVIDER = "mx.provider.test"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BccdServer]:
    """A ``bccd serve`` set up but not started: the sync runs first, by the CLI."""
    if request.param == "sqlite":
        server = BccdServer(tmp_path)
        yield server
        server.stop()
        return
    admin = request.getfixturevalue("pg_admin_url")
    url, name = pg.fresh_database(admin)
    server = BccdServer(tmp_path, database_url=url.replace("postgresql://", "postgresql+psycopg://"))
    server.cli("db", "upgrade")
    try:
        yield server
    finally:
        server.stop()
        pg.drop_database(admin, name)


def _msg(c: Companies, subject: str, *results: str, frm: str | None = None) -> bytes:
    raw = make_message(frm=frm or f"Alice <{c.email('alice')}>", to="Bob Client <bob@client.test>",
                       subject=subject, message_id=f"<{subject.replace(' ', '-')}@{c.domains['acme']}>",
                       body=f"{subject}.\n")
    # a provider adds its Authentication-Results at the top, above everything it received
    return b"".join(f"Authentication-Results: {r}\r\n".encode() for r in results) + raw


def _sync(srv: BccdServer, c: Companies, dovecot: Dovecot, mailbox: str,
          monkeypatch: pytest.MonkeyPatch, *authserv: str) -> None:
    monkeypatch.setenv("SEC2_IMAP_PW", dovecot.users[mailbox])
    extra = [a for aid in authserv for a in ("--authserv-id", aid)]
    srv.cli("imap", "add", c.email("alice"), "--host", "127.0.0.1", "--port",
            str(dovecot.ssl_port), "--security", "ssl", "--username", mailbox,
            "--password-env", "SEC2_IMAP_PW", "--ca-file", dovecot.ca_file, *extra)
    [result] = srv.cli("imap", "sync", "--once")
    assert result["ok"], result


def _by_subject(srv: BccdServer, c: Companies) -> dict[str, dict[str, Any]]:
    out = {}
    for row in srv.cli("mail", "list", c.email("alice")):
        [msg] = srv.cli("mail", "show", str(row["thread_id"]))["messages"]
        out[row["subject"]] = {**msg, "thread_id": row["thread_id"]}
    return out


def test_mail_in_the_inbox_claiming_the_user_is_not_filed_as_theirs(
        srv: BccdServer, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Companies(srv, "sync")
    mailbox = dovecot.add_user(f"claim-{c.slugs['acme']}", "claim-Pa55")
    dovecot.append(mailbox, _msg(c, "Spoofed in the inbox"))
    dovecot.append(mailbox, _msg(c, "Really sent"), "Sent")
    dovecot.append(mailbox, _msg(c, "From the customer", frm="Bob Client <bob@client.test>"))
    _sync(srv, c, dovecot, mailbox, monkeypatch)
    got = _by_subject(srv, c)
    spoofed = got["Spoofed in the inbox"]
    assert spoofed["direction"] == "incoming", spoofed  # not alice's own mail
    assert spoofed["unverified_sender"] is True, spoofed
    assert (got["Really sent"]["direction"], got["Really sent"]["unverified_sender"]) == (
        "outgoing", False)
    assert (got["From the customer"]["direction"],
            got["From the customer"]["unverified_sender"]) == ("incoming", False)

    srv.start()
    with c.page("alice") as http:
        page = http.get(f"/mail/threads/{spoofed['thread_id']}").text
        assert "unverified sender" in page and '<span class="dir">incoming</span>' in page, page
        sent = http.get(f"/mail/threads/{got['Really sent']['thread_id']}").text
        assert "unverified sender" not in sent
    with c.api("alice") as api:
        [m] = api.get(f"/threads/{spoofed['thread_id']}").json()["messages"]
        assert (m["direction"], m["unverified_sender"]) == ("incoming", True)


def test_only_the_providers_own_dmarc_pass_makes_synced_mail_outgoing(
        srv: BccdServer, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Companies(srv, "ar")
    dom = c.domains["acme"]
    mailbox = dovecot.add_user(f"ar-{c.slugs['acme']}", "ar-Pa55")
    passed = f"dkim=pass header.d={dom}; spf=pass smtp.mailfrom={dom}; dmarc=pass header.from={dom}"
    dovecot.append(mailbox, _msg(c, "Provider says pass", f"{PROVIDER}; {passed}"))
    dovecot.append(mailbox, _msg(c, "Stranger says pass", f"mx.evil.test; {passed}"))
    dovecot.append(mailbox, _msg(c, "Forged below the provider",
                                 f"{PROVIDER}; dmarc=fail header.from={dom}",
                                 f"{PROVIDER}; {passed}"))
    dovecot.append(mailbox, _msg(c, "Pass for another domain",
                                 f"{PROVIDER}; dmarc=pass header.from=evil.test"))
    _sync(srv, c, dovecot, mailbox, monkeypatch, PROVIDER)
    assert srv.cli("imap", "list")[-1]["authserv_ids"] == [PROVIDER]
    got = {s: (m["direction"], m["unverified_sender"]) for s, m in _by_subject(srv, c).items()}
    assert got == {
        "Provider says pass": ("outgoing", False),
        "Stranger says pass": ("incoming", True),
        "Forged below the provider": ("incoming", True),
        "Pass for another domain": ("incoming", True),
    }, got
