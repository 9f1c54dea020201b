"""Gmail extensions against a scripted Gmail-shaped peer: ``\\All`` synced once, chosen
folders act as labels, X-GM-THRID/X-GM-LABELS reach ingest, nothing is marked read,
archiving removes the ``\\Inbox`` label."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme

from bccd.config import Settings
from bccd.imap.poller import sync_once
from bccd.imap.sync import IngestSink
from bccd.imap.writeback import process_writeback_jobs
from bccd.ingest.outcome import Outcome
from bccd.ingest.types import ImapOrigin, Turn
from bccd.mailboxes.writeback import enqueue_writeback
from bccd.store.db import Database
from tests.integration.imap.conftest import USER_EMAIL, BccdUser
from tests.integration.imap.gmail_peer import ALL_MAIL, GmailPeer
from tests.integration.imap.helpers import make_message, stored

pytestmark = pytest.mark.spec("7")

BOB = "Bob Client <bob@client.test>"


class Recorder:
    def __init__(self, inner: IngestSink) -> None:
        self.inner = inner
        self.origins: list[ImapOrigin] = []

    async def ingest_imap(self, raw: bytes, *, user_id: int, origin: ImapOrigin,
                          turn: Turn | None = None) -> Outcome:
        self.origins.append(origin)
        return await self.inner.ingest_imap(raw, user_id=user_id, origin=origin, turn=turn)


@pytest.fixture
async def gmail(tmp_path: Path) -> AsyncIterator[GmailPeer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "chain.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    peer = GmailPeer(str(tmp_path / "chain.pem"), str(tmp_path / "key.pem"))
    peer.ca_file = str(tmp_path / "ca.pem")
    peer.add(
        make_message(BOB, USER_EMAIL, message_id="<g-in@client.test>"),
        thrid=1001,
        labels=["\\Inbox", "\\Important"],
    )
    peer.add(
        make_message(USER_EMAIL, BOB, message_id="<g-out@acme.test>", in_reply_to="<g-in@client.test>"),
        thrid=1001,
        labels=["\\Sent"],
    )
    peer.add(make_message(BOB, USER_EMAIL, message_id="<g-work@client.test>"), thrid=2002, labels=["Work"])
    await peer.start()
    yield peer
    await peer.stop()


@pytest.fixture
def add_gmail(add_account: Callable[..., int], gmail: GmailPeer) -> Callable[..., int]:
    def add(**kw: object) -> int:
        from bccd.mailboxes.accounts import PasswordAuth

        server = SimpleNamespace(  # the shape add_account expects of a Dovecot
            ssl_port=gmail.port, ca_file=gmail.ca_file, users={gmail.user: gmail.password}
        )
        return add_account(server, gmail.user, auth=PasswordAuth(gmail.password), **kw)

    return add


async def test_gmail_syncs_all_mail_once_with_thread_ids_and_labels(
    gmail: GmailPeer,
    add_gmail: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    account = add_gmail()
    rec = Recorder(sink)
    [result] = await sync_once(settings, db, rec, account_ids=[account])

    assert result.error is None
    assert [f.folder for f in result.folders] == [ALL_MAIL]
    assert {o.uid: (o.gm_thrid, o.gm_labels) for o in rec.origins} == {
        101: ("1001", ("\\Inbox", "\\Important")),
        102: ("1001", ("\\Sent",)),
        103: ("2002", ("Work",)),
    }
    got = {m["message_id"]: m for m in stored(db, bccd_user.id)}
    assert got["g-in@client.test"]["direction"] == "incoming"
    assert got["g-out@acme.test"]["direction"] == "outgoing"
    # read-only and BODY.PEEK: nothing is marked \Seen
    assert any(c.split(" ", 1)[1].upper().startswith("EXAMINE") for c in gmail.commands)
    fetches = [c for c in gmail.commands if " FETCH " in c.upper()]
    assert fetches and all("BODY[]" not in c.upper() for c in fetches)
    assert not any(" STORE " in c.upper() for c in gmail.commands)

    # incremental: only the new UID
    gmail.add(make_message(BOB, USER_EMAIL, message_id="<g-new@client.test>"), thrid=3003, labels=["\\Inbox"])
    rec.origins.clear()
    [again] = await sync_once(settings, db, rec, account_ids=[account])
    assert [o.uid for o in rec.origins] == [104] and again.stored == 1


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        (["Work"], ["g-work@client.test"]),
        (["INBOX"], ["g-in@client.test"]),
        (["[Gmail]/Sent Mail", "work"], ["g-out@acme.test", "g-work@client.test"]),
    ],
)
async def test_gmail_folders_act_as_labels(
    folders: list[str],
    expected: list[str],
    gmail: GmailPeer,
    add_gmail: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    account = add_gmail(folders=folders)
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error is None
    assert [f.folder for f in result.folders] == [ALL_MAIL]
    assert sorted(m["message_id"] for m in stored(db, bccd_user.id)) == expected
    # skipped messages are not fetched again next time
    [again] = await sync_once(settings, db, sink, account_ids=[account])
    assert sum(f.candidates for f in again.folders) == 0


async def test_gmail_archive_removes_inbox_label(
    gmail: GmailPeer,
    add_gmail: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    account = add_gmail(on_archive="archive")
    await sync_once(settings, db, sink, account_ids=[account])
    thread = next(m["thread_id"] for m in stored(db, bccd_user.id) if m["message_id"] == "g-in@client.test")
    with db.transaction() as s:
        assert enqueue_writeback(s, thread, "archive")
    await process_writeback_jobs(settings, db)
    assert gmail.messages[101].labels == ["\\Important"]
    assert any("-X-GM-LABELS" in c.upper() for c in gmail.commands)
    # the message still lives in All Mail under the same UID: its ref is kept
    [m] = [m for m in stored(db, bccd_user.id) if m["message_id"] == "g-in@client.test"]
    assert m["refs"] == [(ALL_MAIL, 11, 101)]
