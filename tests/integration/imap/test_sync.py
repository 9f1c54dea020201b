"""Folder sync against a real Dovecot: directions, incremental state, UIDVALIDITY,
crash safety, the initial window, BODY.PEEK, folder choice and TLS."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import select

from bccd.config import Settings
from bccd.imap.poller import sync_once
from bccd.imap.sync import IngestSink
from bccd.store.db import Database
from bccd.store.models import ImapAccount, ImapFolderState
from tests.integration.imap.conftest import ALT_EMAIL, BOTH_ENGINES, USER_EMAIL, BccdUser
from tests.integration.imap.helpers import FailingSink, make_message, stored
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.spec("7")

BOB = "Bob Client <bob@client.test>"


def account_row(db: Database, account_id: int) -> ImapAccount:
    with db.read() as s:
        row = s.get(ImapAccount, account_id)
        assert row is not None
        return row


def folder_state(db: Database, account_id: int, folder: str) -> ImapFolderState | None:
    with db.read() as s:
        return s.scalar(
            select(ImapFolderState).where(
                ImapFolderState.account_id == account_id, ImapFolderState.folder == folder
            )
        )


@BOTH_ENGINES
async def test_initial_sync_directions_window_and_peek(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    incoming = make_message(BOB, USER_EMAIL, message_id="<in-1@client.test>")
    dovecot.append(imap_user, incoming)
    dovecot.append(imap_user, make_message(USER_EMAIL, BOB, message_id="<out-1@acme.test>"), "Sent")
    dovecot.append(imap_user, make_message(ALT_EMAIL, BOB, message_id="<out-2@acme.test>"), "Sent")
    # a pending (unconfirmed) alternate is not the user: incoming
    dovecot.append(imap_user, make_message("pending@acme.test", BOB, message_id="<p-1@acme.test>"))
    # the IMAP login name is not an address of the user either
    dovecot.append(
        imap_user, make_message(f"{imap_user}@127.0.0.1", USER_EMAIL, message_id="<login-1@x.test>")
    )
    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<trash-1@x.test>"), "Trash")
    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<junk-1@x.test>"), "Junk")
    old = dt.datetime.now() - dt.timedelta(days=60)
    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<old-1@x.test>"), date=old)
    dovecot.create_folder(imap_user, "Projects/Big Deal")
    dovecot.append(
        imap_user, make_message(BOB, USER_EMAIL, message_id="<proj-1@x.test>"), "Projects/Big Deal"
    )
    account = add_account(dovecot, imap_user)

    [result] = await sync_once(settings, db, sink, account_ids=[account])

    assert result.error is None
    got = {m["message_id"]: m for m in stored(db, bccd_user.id)}
    assert {k: v["direction"] for k, v in got.items()} == {
        "in-1@client.test": "incoming",
        "out-1@acme.test": "outgoing",
        "out-2@acme.test": "outgoing",
        "p-1@acme.test": "incoming",
        "login-1@x.test": "incoming",
        "proj-1@x.test": "incoming",
    }
    assert all(m["sources"] == ["imap"] for m in got.values())
    assert got["out-1@acme.test"]["refs"][0][0] == "Sent"
    assert got["proj-1@x.test"]["refs"][0][0] == "Projects/Big Deal"
    # BODY.PEEK[]: nothing became \Seen
    assert all(b"\\Seen" not in flags for flags in dovecot.flags(imap_user).values())
    assert all(b"\\Seen" not in flags for flags in dovecot.flags(imap_user, "Sent").values())
    row = account_row(db, account)
    assert (row.state, row.state_reason, row.failures) == ("active", "", 0)
    assert row.last_sync_at is not None
    # the old message is outside the window, and the mark moved past it
    state = folder_state(db, account, "INBOX")
    assert state is not None and state.last_uid == max(dovecot.uids(imap_user))


async def test_incremental_nothing_new_then_exactly_the_new_ones(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    for i in range(4):
        dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id=f"<a{i}@client.test>"))
    account = add_account(dovecot, imap_user)
    [first] = await sync_once(settings, db, sink, account_ids=[account])
    assert first.stored == 4

    [again] = await sync_once(settings, db, sink, account_ids=[account])
    assert again.error is None
    assert again.stored == 0
    assert sum(f.candidates for f in again.folders) == 0

    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<new-1@client.test>"))
    dovecot.append(imap_user, make_message(USER_EMAIL, BOB, message_id="<new-2@acme.test>"), "Sent")
    [third] = await sync_once(settings, db, sink, account_ids=[account])
    assert third.stored == 2
    assert sum(f.candidates for f in third.folders) == 2
    ids = [m["message_id"] for m in stored(db, bccd_user.id)]
    assert len(ids) == len(set(ids)) == 6


@BOTH_ENGINES
async def test_uidvalidity_change_resyncs_without_duplicates(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    dovecot.create_folder(imap_user, "Clients")
    msgs = [make_message(BOB, USER_EMAIL, message_id=f"<c{i}@client.test>") for i in range(3)]
    for raw in msgs:
        dovecot.append(imap_user, raw, "Clients")
    account = add_account(dovecot, imap_user, folders=["Clients"])
    await sync_once(settings, db, sink, account_ids=[account])
    before = folder_state(db, account, "Clients")
    assert before is not None and before.last_uid == 3

    # the folder is recreated: same messages, new UIDVALIDITY, plus one new message
    dovecot.delete_folder(imap_user, "Clients")
    dovecot.create_folder(imap_user, "Clients")
    for raw in msgs:
        dovecot.append(imap_user, raw, "Clients")
    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<c-new@client.test>"), "Clients")
    assert dovecot.uidvalidity(imap_user, "Clients") != before.uidvalidity

    [result] = await sync_once(settings, db, sink, account_ids=[account])

    assert result.error is None
    [folder] = result.folders
    assert folder.fresh and folder.stored == 1 and folder.duplicates == 3
    got = stored(db, bccd_user.id)
    assert len(got) == 4
    new_uv = dovecot.uidvalidity(imap_user, "Clients")
    # stale refs (old UIDVALIDITY) are gone; every message points at its new UID
    for m in got:
        assert [r[1] for r in m["refs"]] == [new_uv]


@BOTH_ENGINES
@pytest.mark.parametrize("mode", ["raise", "tempfail"])
async def test_crash_mid_batch_refetches_never_skips(
    mode: str,
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    uids = [
        dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id=f"<m{i}@client.test>"))
        for i in range(8)
    ]
    account = add_account(dovecot, imap_user, folders=["INBOX"])
    # batch_size is 3: the failure hits the middle of the second batch
    [broken] = await sync_once(settings, db, FailingSink(sink, 4, mode=mode), account_ids=[account])

    assert broken.error is not None and "ingest failed temporarily" in broken.error
    row = account_row(db, account)
    assert row.state == "paused" and "ingest failed temporarily" in row.state_reason
    assert len(stored(db, bccd_user.id)) == 4
    state = folder_state(db, account, "INBOX")
    assert state is not None and state.last_uid == uids[3]

    [healed] = await sync_once(settings, db, sink, account_ids=[account])
    assert healed.error is None
    assert healed.stored == 4
    ids = sorted(m["message_id"] for m in stored(db, bccd_user.id))
    assert ids == sorted(f"m{i}@client.test" for i in range(8))
    assert account_row(db, account).state == "active"


@BOTH_ENGINES
async def test_a_failure_mid_batch_leaves_the_next_group_unmarked_and_it_is_fetched_again(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    """The next group is already being ingested when a message of the group before fails
    once: the mark stops before the failure, and whatever of the next group was stored
    all the same is a duplicate, not a second copy, when the next sync fetches it again."""
    uids = [
        dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id=f"<n{i}@client.test>"))
        for i in range(9)
    ]
    account = add_account(dovecot, imap_user, folders=["INBOX"])
    # batch_size is 3: the fifth message (second group) fails, the third group is in flight
    [broken] = await sync_once(settings, db, FailingSink(sink, 4, once=True),
                               account_ids=[account])
    assert broken.error is not None and "ingest failed temporarily" in broken.error
    state = folder_state(db, account, "INBOX")
    assert state is not None and state.last_uid == uids[3]

    [healed] = await sync_once(settings, db, sink, account_ids=[account])
    assert healed.error is None
    ids = [m["message_id"] for m in stored(db, bccd_user.id)]
    assert sorted(ids) == sorted(f"n{i}@client.test" for i in range(9))  # each once
    state = folder_state(db, account, "INBOX")
    assert state is not None and state.last_uid == uids[-1]


async def test_mark_does_not_move_past_a_message_not_yet_stored(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    """A crash before the first message is stored leaves the folder as if never synced."""
    for i in range(2):
        dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id=f"<z{i}@client.test>"))
    account = add_account(dovecot, imap_user, folders=["INBOX"])
    await sync_once(settings, db, FailingSink(sink, 0), account_ids=[account])
    state = folder_state(db, account, "INBOX")
    assert state is not None and state.last_uid == 0
    [ok] = await sync_once(settings, db, sink, account_ids=[account])
    assert ok.stored == 2


async def test_all_folder_is_synced_alone(
    dovecot_all: Dovecot,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    user = dovecot_all.add_user("allmail-user", "pw")
    dovecot_all.append(user, make_message(BOB, USER_EMAIL, message_id="<inbox-only@x.test>"))
    dovecot_all.append(user, make_message(BOB, USER_EMAIL, message_id="<all-1@x.test>"), "All")
    dovecot_all.append(user, make_message(USER_EMAIL, BOB, message_id="<all-2@x.test>"), "All")
    account = add_account(dovecot_all, user)

    [result] = await sync_once(settings, db, sink, account_ids=[account])

    assert [f.folder for f in result.folders] == ["All"]
    assert sorted(m["message_id"] for m in stored(db, bccd_user.id)) == [
        "all-1@x.test",
        "all-2@x.test",
    ]


async def test_chosen_folders_and_special_use_names(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<i@x.test>"))
    dovecot.append(imap_user, make_message(USER_EMAIL, BOB, message_id="<s@x.test>"), "Sent")
    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<t@x.test>"), "Trash")
    account = add_account(dovecot, imap_user, folders=["\\Sent", "inbox"])
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert [f.folder for f in result.folders] == ["Sent", "INBOX"]
    assert sorted(m["message_id"] for m in stored(db, bccd_user.id)) == ["i@x.test", "s@x.test"]


async def test_missing_folder_pauses_with_reason(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    account = add_account(dovecot, imap_user, folders=["Nope"])
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error == "folder 'Nope' not found on the server"
    row = account_row(db, account)
    assert row.state == "paused" and row.state_reason == result.error
    assert row.failures == 1 and row.next_attempt_at is not None


async def test_starttls(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<tls@x.test>"))
    account = add_account(dovecot, imap_user, security="starttls", port=dovecot.port)
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error is None and result.stored == 1


async def test_untrusted_certificate_pauses_then_ssl_cert_file_is_honoured(
    dovecot: Dovecot,
    imap_user: str,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<ca@x.test>"))
    account = add_account(dovecot, imap_user, ca_file=None)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    [bad] = await sync_once(settings, db, sink, account_ids=[account])
    assert bad.error is not None and "TLS certificate of 127.0.0.1" in bad.error
    assert "not trusted" in bad.error
    assert account_row(db, account).state == "paused"

    monkeypatch.setenv("SSL_CERT_FILE", dovecot.ca_file)
    [good] = await sync_once(settings, db, sink, account_ids=[account])
    assert good.error is None and good.stored == 1
    assert account_row(db, account).state == "active"


async def test_host_down_pauses(
    add_account: Callable[..., int],
    dovecot: Dovecot,
    imap_user: str,
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    from tests.support.ports import free_port

    account = add_account(dovecot, imap_user, port=free_port())
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error is not None and "refused" in result.error
    assert account_row(db, account).state == "paused"


@pytest.mark.spec("10")
async def test_rotated_secret_key_still_decrypts_and_re_encrypts(
    dovecot: Dovecot, imap_user: str, add_account: Callable[..., int], settings: Settings,
    db: Database, sink: IngestSink, bccd_user: BccdUser,
) -> None:
    from bccd.crypto import SecretBox

    dovecot.append(imap_user, make_message(BOB, USER_EMAIL, message_id="<rot@x.test>"))
    account = add_account(dovecot, imap_user)  # encrypted under settings' key
    rotated = settings.model_copy(update={"security": settings.security.model_copy(update={
        "secret_key": "a-brand-new-key", "old_secret_keys": [settings.security.secret_key]})})
    [result] = await sync_once(rotated, db, sink, account_ids=[account])
    assert result.error is None and result.stored == 1
    token = account_row(db, account).secret_enc
    assert SecretBox(["a-brand-new-key"]).is_current(token)
    assert not SecretBox([settings.security.secret_key]).is_current(token)
