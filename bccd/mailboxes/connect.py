"""A user connects their own mailbox (SPEC §7): from a preset and a password, or after
OAuth consent. The rules the API, the Mail page and (for OAuth) the callback share.

Password (app password) mailboxes — :func:`plan_password` turns the form into the
account's settings (the preset fills host, port, security, submission settings and the
provider's authserv-ids; "other" and organisation presets take the host typed); the
caller then logs in and lists the folders (``MailboxControl.probe``) and only on success
:func:`save_password` stores it. Nothing is stored on failure.

OAuth mailboxes — :func:`save_oauth` stores the credentials the consent gave (the refresh
token encrypted) under the address the provider told, as a new mailbox or, when the user
signed in again (or connected the same mailbox twice), as new credentials for the
existing one, which is then active again. The first login is the caller's to try
(``mark_first_login``): a failure pauses the mailbox with the server's reason and, for a
refused login, "sign in again".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd.crypto import SecretBox
from bccd.errors import Invalid, NotFound
from bccd.mailboxes import accounts, presets
from bccd.mailboxes.accounts import AccountConfig, OAuth2Auth, PasswordAuth, Submission
from bccd.mailboxes.oauth import Provider, Refused
from bccd.store.models import ImapAccount, User


@dataclass(frozen=True, slots=True)
class PasswordForm:
    preset: str
    email: str
    password: str = field(repr=False)
    username: str = ""
    host: str = ""
    port: int | None = None
    security: str = ""
    smtp_host: str = ""
    smtp_port: int | None = None
    smtp_security: str = ""
    folders: tuple[str, ...] = ()
    scope: str = "all"
    on_archive: str = "none"


@dataclass(frozen=True, slots=True)
class Plan:
    preset: presets.Preset
    config: AccountConfig
    auth: PasswordAuth = field(repr=False)
    smtp: Submission | None
    scope: str
    on_archive: str


def plan_password(user: User, form: PasswordForm) -> Plan:
    preset = presets.get(form.preset)
    if not preset.imap:
        raise Invalid(preset.notes or f"{preset.name} is not an IMAP mailbox")
    if "@" not in form.email or len(form.email) > 320:
        raise Invalid("email: type the mailbox's email address")
    if not form.password:
        raise Invalid("password: type the password (or the app password the provider gave)")
    host = (form.host or preset.imap_host).strip()
    if not host:
        raise Invalid(f"host: type the IMAP server's host name for {preset.name}")
    security = form.security or preset.imap_security
    if security not in accounts.SECURITY:
        raise Invalid("security must be ssl or starttls")
    port = form.port or (preset.imap_port if not form.security or security == preset.imap_security
                         else accounts.DEFAULT_PORTS[security])
    if not 1 <= port <= 65535:
        raise Invalid(f"port {port} is out of range")
    if form.scope not in accounts.SCOPES:
        raise Invalid("scope must be all or known")
    if form.on_archive not in accounts.ON_ARCHIVE:
        raise Invalid("on_archive must be none, archive or delete")
    smtp_host = (form.smtp_host or preset.smtp_host).strip()
    smtp = accounts.submission(smtp_host or None,
                               form.smtp_port or (preset.smtp_port if smtp_host else None),
                               form.smtp_security or (preset.smtp_security if smtp_host else None))
    username = (form.username or form.email).strip()
    config = AccountConfig(id=0, user_id=user.id, host=accounts._check_host(host), port=port,
                           security=security, username=username, auth_kind="password",
                           ca_file=None, folders=tuple(form.folders), on_archive=form.on_archive,
                           state="active")
    return Plan(preset, config, PasswordAuth(form.password), smtp, form.scope, form.on_archive)


def save_password(session: Session, box: SecretBox, user: User, plan: Plan) -> ImapAccount:
    c = plan.config
    return accounts.add_account(
        session, box, user_email=user.email, host=c.host, port=c.port, security=c.security,
        username=c.username, auth=plan.auth, folders=list(c.folders), on_archive=plan.on_archive,
        scope=plan.scope, smtp=plan.smtp, provider=plan.preset.id,
        authserv_ids=list(plan.preset.authserv_ids))


def oauth_credentials(p: Provider, token: dict[str, Any], *, now: float | None = None) -> OAuth2Auth:
    refresh = token.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        raise Refused(f"{p.label} gave no refresh token, so bccd could not keep syncing: "
                      "sign in again and allow offline access", error="no_refresh_token")
    try:
        expires_in = float(token.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    return OAuth2Auth(token_url=p.token_url, client_id=p.client_id, client_secret=p.client_secret,
                      refresh_token=refresh, access_token=str(token["access_token"]),
                      expires_at=(now or time.time()) + expires_in, mechanism=p.mechanism)


def save_oauth(session: Session, box: SecretBox, *, user_id: int, provider: Provider,
               auth: OAuth2Auth, address: str, account_id: int | None = None) -> ImapAccount:
    user = session.get(User, user_id)
    if user is None or user.disabled:
        raise NotFound("the user who started this sign-in no longer exists or is disabled")
    row: ImapAccount | None = None
    if account_id is not None:
        row = session.get(ImapAccount, account_id)
        if row is None or row.user_id != user.id:
            raise NotFound(f"no mailbox {account_id}")
        if row.username.lower() != address.lower():
            raise Invalid(f"you signed in as {address}, but this mailbox is {row.username}: "
                          "sign in again with that account")
    else:
        row = session.scalar(select(ImapAccount).where(
            ImapAccount.user_id == user.id, ImapAccount.host == provider.imap_host,
            ImapAccount.port == provider.imap_port, ImapAccount.username == address))
    if row is not None:  # sign in again: new credentials, active again
        row.auth_kind = auth.mechanism.lower()
        row.secret_enc = accounts.encrypt_auth(box, auth)
        row.oauth_provider = provider.name
        row.needs_signin = False
        if row.state == "paused":
            row.state, row.state_reason, row.failures, row.next_attempt_at = "active", "", 0, None
        session.flush()
        return row
    preset = presets.for_oauth(provider.name)
    smtp = (accounts.submission(provider.smtp_host, provider.smtp_port, provider.smtp_security)
            if provider.smtp_host else None)
    return accounts.add_account(
        session, box, user_email=user.email, host=provider.imap_host, port=provider.imap_port,
        security="ssl", username=address, auth=auth, smtp=smtp,
        provider=preset.id if preset else provider.name, oauth_provider=provider.name,
        authserv_ids=list(preset.authserv_ids) if preset else [])


def mark_first_login(session: Session, account_id: int, reason: str | None, *,
                     auth_refused: bool, poll_interval: int) -> None:
    """After consent: pause with the server's reason (``reason``), or leave it active."""
    if reason is None:
        return
    accounts.mark_failure(session, account_id, reason, poll_interval=poll_interval,
                          auth_refused=auth_refused)
    session.flush()


def owned(session: Session, user: User, account_id: int) -> ImapAccount:
    """The user's own mailbox (another user's is "not found", never "forbidden")."""
    row = session.get(ImapAccount, account_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"no mailbox {account_id}")
    return row


def company_mailboxes(session: Session, admin: User) -> list[dict[str, Any]]:
    """Every mailbox of the admin's company: who, which server, its state — never mail."""
    rows = session.execute(select(ImapAccount, User.email).join(User, User.id == ImapAccount.user_id)
                           .where(User.company_id == admin.company_id).order_by(ImapAccount.id))
    return [accounts.render_account(row, email) for row, email in rows]
