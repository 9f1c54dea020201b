"""Connecting, changing and removing a user's mailbox (SPEC §7) — the steps the JSON API
(``web.api.mailboxes``) and the Mail page (``web.mailbox_pages``) share, each doing its
database work through ``Database.run`` and its network work (IMAP, the OAuth provider)
off the event loop.

- :func:`connect_password`: plan from the preset, log in and list folders
  (``MailboxControl.probe``), then save; a failed login saves nothing (``LoginFailed``
  with the server's reason).
- :func:`start_consent`: an OAuth request (``mailboxes.consent``) and the provider's
  consent URL; the callback (``web.oauth_callback``) finishes it with :func:`finish_consent`.
- :func:`folders`: the folder list the server returns now (for choosing folders).
- :func:`update`: folders (checked against that list), scope, write-back, submission.
- :func:`remove`: stop the sync (a sync in flight ends cleanly), delete, keep or delete mail.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bccd.crypto import SecretBox
from bccd.errors import Invalid
from bccd.log import get_logger
from bccd.mailboxes import accounts, connect, consent, oauth, removal
from bccd.mailboxes.control import Folder, LoginFailed
from bccd.store.models import User

if TYPE_CHECKING:
    from bccd.runtime import Services

log = get_logger("bccd.web.mailboxes")


def callback_url(services: Services) -> str:
    return services.settings.http.base_url.rstrip("/") + "/oauth/callback"


def box(services: Services) -> SecretBox:
    return SecretBox(services.settings.secret_keys)


def show(services: Services, account_id: int) -> dict[str, Any]:
    with services.db.read() as s:
        return accounts.show_account(s, accounts.get_account(s, account_id))


async def connect_password(services: Services, user_id: int, form: connect.PasswordForm
                           ) -> tuple[dict[str, Any], list[Folder]]:
    def plan() -> connect.Plan:
        with services.db.read() as s:
            return connect.plan_password(_user(s, user_id), form)

    p = await services.db.run(plan)
    found = await services.mailboxes.probe(p.config, p.auth)
    names = {f.name for f in found} | {f.special for f in found if f.special}
    missing = [f for f in p.config.folders if f not in names]
    if missing:
        raise Invalid(f"folders: the server has no folder {missing[0]!r}")

    def save() -> int:
        with services.db.transaction() as s:
            return connect.save_password(s, box(services), _user(s, user_id), p).id

    account_id = await services.db.run(save)
    log.info("mailbox_connected", user=user_id, account=account_id, provider=form.preset, how="password")
    services.mailboxes.wake()
    return await services.db.run(show, services, account_id), found


async def start_consent(services: Services, user_id: int, provider_name: str,
                        account_id: int | None = None) -> str:
    p = oauth.provider(services.settings, provider_name)

    def begin() -> consent.Request:
        with services.db.transaction() as s:
            user = _user(s, user_id)
            if account_id is not None:
                row = connect.owned(s, user, account_id)
                if row.oauth_provider != provider_name:
                    raise Invalid(f"mailbox {account_id} was not connected through {provider_name}")
            return consent.begin(s, box(services), purpose="mailbox", provider=provider_name,
                                 user_id=user_id, account_id=account_id)

    req = await services.db.run(begin)
    hint = None
    if account_id is not None:
        hint = (await services.db.run(show, services, account_id))["username"]
    return oauth.authorization_url(p, redirect_uri=callback_url(services), state=req.state,
                                   code_verifier=req.code_verifier, login_hint=hint)


async def finish_consent(services: Services, c: consent.Consent, code: str) -> int:
    """The code for tokens, the address, save, first login → the mailbox id."""
    p = oauth.provider(services.settings, c.provider)
    token = await asyncio.to_thread(oauth.exchange, p, redirect_uri=callback_url(services),
                                    code=code, code_verifier=c.code_verifier)
    address = await asyncio.to_thread(oauth.address_of, p, token)
    auth = connect.oauth_credentials(p, token)
    assert c.user_id is not None

    def save() -> tuple[int, accounts.AccountConfig]:
        with services.db.transaction() as s:
            row = connect.save_oauth(s, box(services), user_id=c.user_id or 0, provider=p,
                                     auth=auth, address=address, account_id=c.account_id)
            return row.id, accounts.account_config(row)

    account_id, config = await services.db.run(save)
    reason: str | None = None
    refused = False
    try:
        await services.mailboxes.probe(config, auth)
    except LoginFailed as exc:  # whatever failed, signing in again is what the user can try
        reason, refused = str(exc), True

    def first_login() -> None:
        with services.db.transaction() as s:
            connect.mark_first_login(s, account_id, reason, auth_refused=refused,
                                     poll_interval=services.settings.imap.poll_interval)

    await services.db.run(first_login)
    log.info("mailbox_connected", user=c.user_id, account=account_id, provider=c.provider,
             how="oauth", first_login=reason or "ok")
    services.mailboxes.wake()
    return account_id


async def folders(services: Services, user_id: int, account_id: int) -> list[Folder]:
    def load() -> tuple[accounts.AccountConfig, accounts.Auth]:
        with services.db.read() as s:
            row = connect.owned(s, _user(s, user_id), account_id)
            return accounts.account_config(row), accounts.decrypt_auth(box(services), row.secret_enc)

    config, auth = await services.db.run(load)
    return await services.mailboxes.probe(config, auth)


async def update(services: Services, user_id: int, account_id: int, changes: dict[str, Any]
                 ) -> dict[str, Any]:
    if changes.get("folders"):
        found = await folders(services, user_id, account_id)
        names = {f.name for f in found} | {f.special for f in found if f.special}
        missing = [f for f in changes["folders"] if f not in names]
        if missing:
            raise Invalid(f"folders: the server has no folder {missing[0]!r}")

    def work() -> dict[str, Any]:
        with services.db.transaction() as s:
            connect.owned(s, _user(s, user_id), account_id)
            row = accounts.update_account(s, account_id, **changes)
            return accounts.show_account(s, row)

    out = await services.db.run(work)
    services.mailboxes.wake()
    return out


async def remove(services: Services, user_id: int, account_id: int, *, delete_mail: bool) -> dict[str, Any]:
    def check() -> None:
        with services.db.read() as s:
            connect.owned(s, _user(s, user_id), account_id)

    await services.db.run(check)
    await services.mailboxes.stop(account_id)
    try:
        def work() -> dict[str, Any]:
            with services.db.transaction() as s:
                connect.owned(s, _user(s, user_id), account_id)
                return removal.remove_account(s, account_id, delete_mail=delete_mail)

        out = await services.db.run(work)
    finally:
        services.mailboxes.release(account_id)
    log.info("mailbox_removed", user=user_id, account=account_id, delete_mail=delete_mail,
             messages_deleted=out["messages_deleted"])
    return out


def _user(s: Any, user_id: int) -> User:
    user = s.get(User, user_id)
    if user is None or user.disabled:
        raise Invalid("this user is disabled")
    return user  # type: ignore[no-any-return]
