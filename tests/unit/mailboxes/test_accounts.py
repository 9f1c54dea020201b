"""Mailbox records (``bccd.mailboxes.accounts``): validation, encrypted credentials, state
transitions, back-off."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from bccd import accounts as users
from bccd.crypto import SecretBox
from bccd.errors import Conflict, Invalid, NotFound
from bccd.mailboxes import accounts
from bccd.store.db import Database
from bccd.store.models import Base, ImapAccount, utcnow

pytestmark = pytest.mark.spec("7")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    Base.metadata.create_all(database.engine)
    with database.transaction() as s:
        users.create_user(s, "alice@acme.test", users.create_company(s, "Acme", "acme"))
    yield database
    database.dispose()


BOX = SecretBox(["unit-key"])


def _add(db: Database, **kw: object) -> int:
    args: dict[str, object] = {
        "user_email": "alice@acme.test",
        "host": "imap.example",
        "username": "alice",
        "auth": accounts.PasswordAuth("pw-123"),
    }
    args.update(kw)
    with db.transaction() as s:
        return accounts.add_account(s, BOX, **args).id  # type: ignore[arg-type]


def test_add_defaults_and_encrypted_credentials(db: Database) -> None:
    account_id = _add(db)
    with db.read() as s:
        row = s.get(ImapAccount, account_id)
        assert row is not None
        assert (row.port, row.security, row.state, row.folders, row.on_archive) == (
            993,
            "ssl",
            "active",
            [],
            "none",
        )
        assert "pw-123" not in row.secret_enc
        assert accounts.load_auth(s, BOX, account_id) == accounts.PasswordAuth("pw-123")
        [listed] = accounts.list_accounts(s)
    assert listed["folders"] == "all" and listed["user"] == "alice@acme.test"
    assert "pw-123" not in str(listed)
    assert _add(db, security="starttls", host="other.example") == account_id + 1
    with db.read() as s:
        assert s.get(ImapAccount, account_id + 1).port == 143  # type: ignore[union-attr]


def test_add_validation(db: Database) -> None:
    with pytest.raises(Conflict):
        _add(db), _add(db)
    with pytest.raises(NotFound):
        _add(db, user_email="bob@acme.test")
    for bad in (
        {"security": "none"},
        {"on_archive": "move"},
        {"port": 0},
        {"host": "a b"},
        {"username": " "},
        {"auth": accounts.PasswordAuth("")},
        {"ca_file": "/nonexistent"},
    ):
        with pytest.raises(Invalid):
            _add(db, **{"host": "h2.example", **bad})


def test_token_url_rules() -> None:
    assert accounts.check_token_url("https://oauth2.googleapis.com/token")
    assert accounts.check_token_url("http://127.0.0.1:8080/token")
    assert accounts.check_token_url("http://localhost/token")
    for bad in ("http://oauth.example/token", "ftp://x/y", "token"):
        with pytest.raises(Invalid):
            accounts.check_token_url(bad)


def test_oauth_credentials_round_trip(db: Database) -> None:
    auth = accounts.OAuth2Auth(
        token_url="https://t.example/token",
        client_id="cid",
        client_secret="cs",
        refresh_token="rt",
        mechanism="OAUTHBEARER",
    )
    account_id = _add(db, auth=auth)
    with db.transaction() as s:
        assert s.get(ImapAccount, account_id).auth_kind == "oauthbearer"  # type: ignore[union-attr]
        assert accounts.load_auth(s, BOX, account_id) == auth
        import dataclasses

        refreshed = dataclasses.replace(auth, access_token="at", expires_at=123.0)
        accounts.save_auth(s, BOX, account_id, refreshed)
    with db.read() as s:
        assert accounts.load_auth(s, BOX, account_id) == refreshed
    with pytest.raises(Invalid):
        _add(
            db,
            host="x.example",
            auth=accounts.OAuth2Auth(token_url="https://t/", client_id="", refresh_token="rt"),
        )


def test_failure_pauses_with_backoff_and_success_resets(db: Database) -> None:
    account_id = _add(db)
    now = utcnow()
    delays = []
    for _ in range(4):
        with db.transaction() as s:
            retry = accounts.mark_failure(s, account_id, "login refused", poll_interval=60, now=now)
            assert retry is not None
            delays.append((retry - now).total_seconds())
    for delay, expected in zip(delays, [60, 120, 240, 480], strict=True):
        assert expected * 0.9 <= delay <= expected * 1.1  # ±10 % jitter
    with db.read() as s:
        row = s.get(ImapAccount, account_id)
        assert row is not None and (row.state, row.state_reason, row.failures) == (
            "paused",
            "login refused",
            4,
        )
    with db.transaction() as s:
        accounts.mark_success(s, account_id, now=now + dt.timedelta(seconds=5))
    with db.read() as s:
        row = s.get(ImapAccount, account_id)
        assert row is not None
        assert (row.state, row.state_reason, row.failures, row.next_attempt_at) == ("active", "", 0, None)
        assert row.last_sync_at == now + dt.timedelta(seconds=5)
        assert accounts.syncable_account_ids(s) == [account_id]


def test_a_late_sync_outcome_leaves_a_disabled_account_and_its_reason_alone(db: Database) -> None:
    """A session still ending when its user was disabled reports success or failure
    afterwards: the account stays disabled, with the reason ``user enable`` looks for."""
    account_id = _add(db)
    with db.transaction() as s:
        s.execute(update(ImapAccount).where(ImapAccount.id == account_id)
                  .values(state="disabled", state_reason="user disabled"))
    now = utcnow()
    with db.transaction() as s:
        accounts.mark_success(s, account_id, now=now)
        assert accounts.mark_failure(s, account_id, "login refused", poll_interval=60) is None
    with db.read() as s:
        row = s.get(ImapAccount, account_id)
        assert row is not None
        assert (row.state, row.state_reason, row.failures, row.next_attempt_at) == (
            "disabled", "user disabled", 0, None)
        assert row.last_sync_at == now
        assert accounts.syncable_account_ids(s) == []


def test_backoff_is_capped() -> None:
    assert accounts.backoff_seconds(50, 300) <= accounts.MAX_BACKOFF * 1.1
    assert 0.9 <= accounts.backoff_seconds(1, 1) <= 1.1


def test_parse_folders() -> None:
    assert accounts.parse_folders("INBOX, Sent ,INBOX") == ["INBOX", "Sent"]
    assert accounts.parse_folders(None) == [] and accounts.parse_folders("") == []
    with pytest.raises(Invalid):
        accounts.parse_folders("A,,B")
