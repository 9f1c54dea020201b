"""OAuth 2.0 against Dovecot's ``oauth2`` passdb and a loopback token server: the access
token is obtained with the refresh token, stored encrypted, reused while fresh,
refreshed before expiry and after the server refuses it; a revoked grant pauses the
account."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bccd.config import Settings
from bccd.crypto import SecretBox
from bccd.imap.poller import sync_once
from bccd.imap.sync import IngestSink
from bccd.mailboxes import accounts
from bccd.store.db import Database
from bccd.store.models import ImapAccount
from tests.integration.imap.conftest import USER_EMAIL, BccdUser
from tests.integration.imap.helpers import make_message, stored
from tests.support.dovecot import Dovecot
from tests.support.oauth import OAuthServer
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.spec("7")

BOB = "Bob Client <bob@client.test>"


def _auth(db: Database, box: SecretBox, account_id: int) -> accounts.OAuth2Auth:
    with db.read() as s:
        auth = accounts.load_auth(s, box, account_id)
    assert isinstance(auth, accounts.OAuth2Auth)
    return auth


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_oauth2_login_refresh_and_reuse(
    mechanism: str,
    dovecot_oauth: Dovecot,
    oauth_server: OAuthServer,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
    box: SecretBox,
) -> None:
    user = dovecot_oauth.add_user(f"oauth-{mechanism.lower()}", "unused-password")
    dovecot_oauth.append(user, make_message(BOB, USER_EMAIL, message_id=f"<o1-{mechanism}@x.test>"))
    refresh_token = oauth_server.grant(user)
    auth = accounts.OAuth2Auth(
        token_url=oauth_server.token_url,
        client_id=oauth_server.client_id,
        client_secret=oauth_server.client_secret,
        refresh_token=refresh_token,
        mechanism=mechanism,
    )
    account = add_account(dovecot_oauth, user, auth=auth)
    with db.read() as s:
        row = s.get(ImapAccount, account)
        assert row is not None and row.auth_kind == mechanism.lower()
        assert refresh_token not in row.secret_enc and "client-s3cret" not in row.secret_enc

    refreshes = oauth_server.refreshes
    [first] = await sync_once(settings, db, sink, account_ids=[account])
    assert first.error is None and first.stored == 1
    assert oauth_server.refreshes == refreshes + 1
    saved = _auth(db, box, account)
    assert saved.access_token.startswith("at-") and saved.expires_at > time.time() + 3000

    # still fresh: reused, no refresh
    [second] = await sync_once(settings, db, sink, account_ids=[account])
    assert second.error is None and oauth_server.refreshes == refreshes + 1

    # the server stops accepting the cached token early: refreshed once, login retried
    oauth_server.expire_all()
    dovecot_oauth.append(user, make_message(BOB, USER_EMAIL, message_id=f"<o2-{mechanism}@x.test>"))
    [third] = await sync_once(settings, db, sink, account_ids=[account])
    assert third.error is None and third.stored == 1
    assert oauth_server.refreshes == refreshes + 2
    assert _auth(db, box, account).access_token != saved.access_token
    assert len(stored(db, bccd_user.id)) == 2


async def test_token_refreshed_before_expiry(
    dovecot_oauth: Dovecot,
    oauth_server: OAuthServer,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
    box: SecretBox,
) -> None:
    user = dovecot_oauth.add_user("oauth-expiring", "unused")
    refresh_token = oauth_server.grant(user)
    account = add_account(
        dovecot_oauth,
        user,
        auth=accounts.OAuth2Auth(
            token_url=oauth_server.token_url,
            client_id=oauth_server.client_id,
            client_secret=oauth_server.client_secret,
            refresh_token=refresh_token,
        ),
    )
    await sync_once(settings, db, sink, account_ids=[account])
    token = _auth(db, box, account)
    # pretend the token expires in 60 s: inside the refresh margin, so it is renewed first
    with db.transaction() as s:
        accounts.save_auth(
            s,
            box,
            account,
            accounts.OAuth2Auth(
                **{
                    **{
                        f: getattr(token, f)
                        for f in (
                            "token_url",
                            "client_id",
                            "client_secret",
                            "refresh_token",
                            "access_token",
                            "mechanism",
                        )
                    },
                    "expires_at": time.time() + 60,
                },
            ),
        )
    before = oauth_server.refreshes
    introspections = oauth_server.introspections
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error is None
    assert oauth_server.refreshes == before + 1
    # the new token was used at once (one introspection, no refused login first)
    assert oauth_server.introspections == introspections + 1
    assert _auth(db, box, account).access_token != token.access_token


async def test_revoked_refresh_token_pauses_account(
    dovecot_oauth: Dovecot,
    oauth_server: OAuthServer,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
) -> None:
    user = dovecot_oauth.add_user("oauth-revoked", "unused")
    refresh_token = oauth_server.grant(user)
    oauth_server.revoke(refresh_token)
    account = add_account(
        dovecot_oauth,
        user,
        auth=accounts.OAuth2Auth(
            token_url=oauth_server.token_url,
            client_id=oauth_server.client_id,
            client_secret=oauth_server.client_secret,
            refresh_token=refresh_token,
        ),
    )
    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error == "OAuth2 token refresh refused (400 invalid_grant)"
    with db.read() as s:
        row = s.get(ImapAccount, account)
        assert row is not None and row.state == "paused" and row.state_reason == result.error
        assert refresh_token not in row.state_reason


async def test_a_rotated_refresh_token_is_kept_when_the_connect_is_cancelled_mid_refresh(
    dovecot_oauth: Dovecot,
    oauth_server: OAuthServer,
    add_account: Callable[..., int],
    settings: Settings,
    db: Database,
    sink: IngestSink,
    bccd_user: BccdUser,
    box: SecretBox,
) -> None:
    """With refresh-token rotation the old token dies on use: if the connect is cancelled
    (shutdown, ``doctor``'s timeout) while the token endpoint answers, the new refresh
    token must still be stored, or the account is locked out until re-authorized."""
    import asyncio

    from bccd.imap.client import connect_account

    user = dovecot_oauth.add_user("oauth-rotating", "unused")
    dovecot_oauth.append(user, make_message(BOB, USER_EMAIL, message_id="<rot1@x.test>"))
    first = oauth_server.grant(user, rotate=True)
    account = add_account(dovecot_oauth, user, auth=accounts.OAuth2Auth(
        token_url=oauth_server.token_url, client_id=oauth_server.client_id,
        client_secret=oauth_server.client_secret, refresh_token=first))
    entered, gate = oauth_server.hold(first)
    connecting = asyncio.create_task(connect_account(db, box, account))
    assert await asyncio.to_thread(entered.wait, 10)
    connecting.cancel()  # the endpoint has the request: the old token is about to die
    with pytest.raises(asyncio.CancelledError):
        await connecting
    gate.set()
    await wait_until_async(lambda: _auth(db, box, account).refresh_token != first, timeout=10)
    assert first not in oauth_server.grants  # rotated away: only the stored one works now
    assert _auth(db, box, account).refresh_token in oauth_server.grants

    [result] = await sync_once(settings, db, sink, account_ids=[account])
    assert result.error is None and result.stored == 1
