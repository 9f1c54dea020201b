"""IMAP account records: adding, listing, credentials at rest, sync state.

Takes an open session (``Database.transaction()``/``read()``) and a
:class:`bccd.crypto.SecretBox`; returns model rows or plain records:

- :func:`add_account` validates the input (user exists, security, port, CA file readable,
  OAuth token URL https — plain http only to loopback, for tests), encrypts the
  credentials (``ImapAccount.secret_enc`` is a Fernet token over a JSON object: the
  password, or the OAuth 2.0 client id/secret, refresh token, cached access token and its
  expiry) and returns the new row. Bad input raises ``bccd.errors.Invalid``/``NotFound``.
- :func:`account_config` turns a row into a frozen :class:`AccountConfig` that crosses
  threads safely; :func:`load_auth`/:func:`save_auth` decrypt/encrypt the credentials.
- :func:`mark_failure`/:func:`mark_success` are the only state transitions of an
  account: a failure pauses it with a one-line reason and schedules the next attempt
  with exponential back-off; a success makes it active again.
- :func:`render_account` is the public JSON shape (``imap list``); it never contains
  secrets.

Secrets never appear in a repr, a log line or a rendered record.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import random
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bccd import accounts as users
from bccd.crypto import SecretBox, SecretError
from bccd.errors import Conflict, Invalid, NotFound
from bccd.store.models import ImapAccount, User, utcnow

SECURITY = ("ssl", "starttls")
ON_ARCHIVE = ("none", "archive", "delete")
SCOPES = ("all", "known")
DEFAULT_PORTS = {"ssl": 993, "starttls": 143}
SMTP_PORTS = {"ssl": 465, "starttls": 587}


@dataclass(frozen=True, slots=True)
class Submission:
    """Where mail is sent as the user (SPEC §7, §12): the mailbox's own SMTP submission
    server, authenticated with the mailbox's credentials."""

    host: str
    port: int
    security: str   # ssl | starttls


def submission(host: str | None, port: int | None = None,
               security: str | None = None) -> Submission | None:
    """Validated submission settings (``--smtp-host/--smtp-port/--smtp-security``);
    None when no host is given. The port defaults to 465 (ssl) or 587 (starttls)."""
    if not host:
        if port is not None or security is not None:
            raise Invalid("--smtp-port and --smtp-security need --smtp-host")
        return None
    security = security or "starttls"
    if security not in SECURITY:
        raise Invalid("--smtp-security must be ssl or starttls")
    port = SMTP_PORTS[security] if port is None else port
    if not 1 <= port <= 65535:
        raise Invalid(f"--smtp-port {port} is out of range")
    return Submission(_check_host(host), port, security)
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
MAX_BACKOFF = 6 * 3600  # seconds; a paused account is retried at least this often
REASON_MAX = 300


@dataclass(frozen=True, slots=True)
class PasswordAuth:
    password: str = field(repr=False)

    kind: Literal["password"] = "password"


@dataclass(frozen=True, slots=True)
class OAuth2Auth:
    """OAuth 2.0 refresh-token credentials; ``expires_at`` is a UNIX timestamp."""

    token_url: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    access_token: str = field(default="", repr=False)
    expires_at: float = 0.0
    mechanism: str = "XOAUTH2"

    kind: Literal["oauth2"] = "oauth2"


Auth = PasswordAuth | OAuth2Auth


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """An account as the sync code needs it (no ORM object crosses threads)."""

    id: int
    user_id: int
    host: str
    port: int
    security: str
    username: str
    auth_kind: str
    ca_file: str | None
    folders: tuple[str, ...]
    on_archive: str
    state: str
    authserv_ids: tuple[str, ...] = ()  # the provider's own Authentication-Results ids
    scope: str = "all"                  # all | known (SPEC §7)

    def label(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"


def account_config(row: ImapAccount) -> AccountConfig:
    return AccountConfig(
        id=row.id,
        user_id=row.user_id,
        host=row.host,
        port=row.port,
        security=row.security,
        username=row.username,
        auth_kind=row.auth_kind,
        ca_file=row.ca_file,
        folders=tuple(str(f) for f in (row.folders or [])),
        on_archive=row.on_archive,
        state=row.state,
        authserv_ids=tuple(str(a) for a in (row.authserv_ids or [])), scope=row.scope,
    )


# ---------------------------------------------------------------- credentials


def _auth_to_json(auth: Auth) -> dict[str, Any]:
    if isinstance(auth, PasswordAuth):
        return {"v": 1, "kind": "password", "password": auth.password}
    return {
        "v": 1,
        "kind": "oauth2",
        "token_url": auth.token_url,
        "client_id": auth.client_id,
        "client_secret": auth.client_secret,
        "refresh_token": auth.refresh_token,
        "access_token": auth.access_token,
        "expires_at": auth.expires_at,
        "mechanism": auth.mechanism,
    }


def _auth_from_json(data: dict[str, Any]) -> Auth:
    kind = data.get("kind")
    if kind == "password":
        return PasswordAuth(password=str(data.get("password", "")))
    if kind == "oauth2":
        return OAuth2Auth(
            token_url=str(data.get("token_url", "")),
            client_id=str(data.get("client_id", "")),
            client_secret=str(data.get("client_secret", "")),
            refresh_token=str(data.get("refresh_token", "")),
            access_token=str(data.get("access_token", "")),
            expires_at=float(data.get("expires_at", 0.0) or 0.0),
            mechanism=str(data.get("mechanism", "XOAUTH2")),
        )
    raise SecretError("stored credentials have an unknown kind")


def encrypt_auth(box: SecretBox, auth: Auth) -> str:
    return box.encrypt_json(_auth_to_json(auth))


def decrypt_auth(box: SecretBox, token: str) -> Auth:
    return _auth_from_json(box.decrypt_json(token))


def load_auth(session: Session, box: SecretBox, account_id: int) -> Auth:
    row = session.get(ImapAccount, account_id)
    if row is None:
        raise NotFound(f"no IMAP account {account_id}")
    return decrypt_auth(box, row.secret_enc)


def save_auth(session: Session, box: SecretBox, account_id: int, auth: Auth) -> None:
    """Store (re-encrypted under the current key) credentials, e.g. a refreshed token."""
    row = session.get(ImapAccount, account_id)
    if row is None:
        raise NotFound(f"no IMAP account {account_id}")
    row.secret_enc = encrypt_auth(box, auth)


# ---------------------------------------------------------------- validation


def check_token_url(url: str) -> str:
    """https, or plain http to a loopback address (a local test or proxy)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
        raise Invalid("--oauth2-token-url must be https:// (http only to a loopback address)")
    raise Invalid(f"--oauth2-token-url {url!r} is not an https:// URL")


def _check_host(host: str) -> str:
    host = host.strip()
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise Invalid(f"--host {host!r} is not a host name or address")
    return host


MAX_AUTHSERV_IDS = 10


def check_authserv_ids(ids: list[str] | None) -> list[str]:
    """The provider's authserv-ids (``--authserv-id``, repeatable): the ids its own
    ``Authentication-Results`` carry, lowercased, each a host-like token (SPEC §7)."""
    out: list[str] = []
    for raw in ids or []:
        value = raw.strip().lower()
        if not value or len(value) > 255 or any(c.isspace() or c in ';()"\\' for c in value) \
                or not value.isascii() or not value.isprintable():
            raise Invalid(f"--authserv-id {raw!r} is not an authserv-id (such as mx.google.com)")
        if value not in out:
            out.append(value)
    if len(out) > MAX_AUTHSERV_IDS:
        raise Invalid(f"at most {MAX_AUTHSERV_IDS} --authserv-id values")
    return out


def parse_folders(value: str | None) -> list[str]:
    """``A,B`` → ``["A", "B"]``; empty or None → ``[]`` (all mail)."""
    if not value:
        return []
    folders = [f.strip() for f in value.split(",")]
    if any(not f for f in folders):
        raise Invalid("--folders: empty folder name")
    return list(dict.fromkeys(folders))


def add_account(
    session: Session,
    box: SecretBox,
    *,
    user_email: str,
    host: str,
    username: str,
    auth: Auth,
    port: int | None = None,
    security: str = "ssl",
    ca_file: str | None = None,
    folders: list[str] | None = None,
    on_archive: str = "none",
    scope: str = "all",
    smtp: Submission | None = None,
    provider: str | None = None,
    oauth_provider: str | None = None,
    authserv_ids: list[str] | None = None,
) -> ImapAccount:
    user = users.get_user(session, user_email)
    if scope not in SCOPES:
        raise Invalid("--scope must be all or known")
    if security not in SECURITY:
        raise Invalid("--security must be ssl or starttls")
    if on_archive not in ON_ARCHIVE:
        raise Invalid("--on-archive must be none, archive or delete")
    port = DEFAULT_PORTS[security] if port is None else port
    if not 1 <= port <= 65535:
        raise Invalid(f"--port {port} is out of range")
    host = _check_host(host)
    username = username.strip()
    if not username:
        raise Invalid("--username must not be empty")
    if ca_file:
        ca_file = os.path.abspath(ca_file)
        if not os.path.isfile(ca_file) or not os.access(ca_file, os.R_OK):
            raise Invalid(f"--ca-file {ca_file}: not a readable file")
    if isinstance(auth, PasswordAuth):
        if not auth.password:
            raise Invalid("the password is empty")
        auth_kind = "password"
    else:
        check_token_url(auth.token_url)
        if not auth.client_id or not auth.refresh_token:
            raise Invalid("OAuth 2.0 needs a client id and a refresh token")
        if auth.mechanism not in OAUTH_MECHANISMS:
            raise Invalid("--oauth2-mechanism must be xoauth2 or oauthbearer")
        auth_kind = auth.mechanism.lower()
    existing = session.scalar(
        select(ImapAccount.id).where(
            ImapAccount.user_id == user.id,
            ImapAccount.host == host,
            ImapAccount.port == port,
            ImapAccount.username == username,
        )
    )
    if existing is not None:
        raise Conflict(f"IMAP account {username}@{host}:{port} already exists (id {existing})")
    row = ImapAccount(
        user_id=user.id,
        host=host,
        port=port,
        security=security,
        username=username,
        auth_kind=auth_kind,
        secret_enc=encrypt_auth(box, auth),
        ca_file=ca_file or None,
        folders=list(folders or []),
        on_archive=on_archive,
        scope=scope,
        smtp_host=smtp.host if smtp else None,
        smtp_port=smtp.port if smtp else None,
        smtp_security=smtp.security if smtp else None,
        provider=provider,
        oauth_provider=oauth_provider,
        authserv_ids=check_authserv_ids(authserv_ids),
        state="active",
        state_reason="",
        failures=0,
    )
    session.add(row)
    session.flush()
    return row


def get_account(session: Session, account_id: int) -> ImapAccount:
    row = session.get(ImapAccount, account_id)
    if row is None:
        raise NotFound(f"no IMAP account {account_id}")
    return row


_KEEP: Any = object()   # update_account: leave this setting as it is


def update_account(
    session: Session,
    account_id: int,
    *,
    folders: list[str] | Any = _KEEP,
    scope: str | Any = _KEEP,
    on_archive: str | Any = _KEEP,
    smtp: Submission | Any | None = _KEEP,
    authserv_ids: list[str] | Any = _KEEP,
) -> ImapAccount:
    """Change what is synced and how (``imap set``); only the settings given change.
    ``smtp=None`` removes the submission settings (the mailbox can no longer send)."""
    row = get_account(session, account_id)
    if folders is not _KEEP:
        row.folders = list(folders)
    if scope is not _KEEP:
        if scope not in SCOPES:
            raise Invalid("--scope must be all or known")
        row.scope = scope
    if on_archive is not _KEEP:
        if on_archive not in ON_ARCHIVE:
            raise Invalid("--on-archive must be none, archive or delete")
        row.on_archive = on_archive
    if smtp is not _KEEP:
        row.smtp_host = smtp.host if smtp else None
        row.smtp_port = smtp.port if smtp else None
        row.smtp_security = smtp.security if smtp else None
    if authserv_ids is not _KEEP:
        row.authserv_ids = check_authserv_ids(authserv_ids)
    session.flush()
    return row


def submission_of(row: ImapAccount) -> Submission | None:
    if not row.smtp_host or row.smtp_port is None or row.smtp_security is None:
        return None
    return Submission(row.smtp_host, row.smtp_port, row.smtp_security)


def syncable_account_ids(session: Session) -> list[int]:
    """Accounts the poller runs (active and paused ones; paused wait for their back-off)."""
    q = (
        select(ImapAccount.id)
        .join(User, User.id == ImapAccount.user_id)
        .where(ImapAccount.state.in_(("active", "paused")), User.disabled.is_(False))
        .order_by(ImapAccount.id)
    )
    return list(session.scalars(q))


def render_account(row: ImapAccount, user_email: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "user": user_email,
        "host": row.host,
        "port": row.port,
        "security": row.security,
        "username": row.username,
        "auth": row.auth_kind,
        "ca_file": row.ca_file,
        "folders": list(row.folders or []) or "all",
        "scope": row.scope,
        "on_archive": row.on_archive,
        "smtp": ({"host": row.smtp_host, "port": row.smtp_port, "security": row.smtp_security}
                 if row.smtp_host else None),
        "authserv_ids": list(row.authserv_ids or []),
        "state": row.state,
        "reason": row.state_reason,
        "failures": row.failures,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "last_sync_at": row.last_sync_at.isoformat() if row.last_sync_at else None,
        "provider": row.provider,
        "oauth_provider": row.oauth_provider,
        "needs_signin": bool(row.needs_signin),
        "messages_synced": int(row.messages_synced or 0),
        # the first full pass over the initial window; ``progress`` is the running (or
        # last) pass's messages, done of total
        "initial_sync_done_at": row.initial_synced_at.isoformat() if row.initial_synced_at else None,
        "progress": {"done": int(row.sync_done or 0), "total": int(row.sync_total or 0)},
    }


def show_account(session: Session, row: ImapAccount) -> dict[str, Any]:
    user = session.get(User, row.user_id)
    return render_account(row, user.email if user else "")


def list_accounts(session: Session, user_email: str | None = None) -> list[dict[str, Any]]:
    q = select(ImapAccount, User.email).join(User, User.id == ImapAccount.user_id)
    if user_email:
        q = q.where(User.id == users.get_user(session, user_email).id)
    return [render_account(row, email) for row, email in session.execute(q.order_by(ImapAccount.id))]


# ---------------------------------------------------------------- state


def backoff_seconds(failures: int, poll_interval: int) -> float:
    """Exponential back-off from the poll interval: 1×, 2×, 4× … capped at 6 h, ±10 %."""
    base = max(1, poll_interval)
    delay: float = min(base * 2 ** max(0, failures - 1), max(base, MAX_BACKOFF))
    return delay * random.uniform(0.9, 1.1)


def mark_failure(
    session: Session,
    account_id: int,
    reason: str,
    *,
    poll_interval: int,
    now: dt.datetime | None = None,
    auth_refused: bool = False,
) -> dt.datetime | None:
    """Pause the account with ``reason``; returns when it will be tried again. A disabled
    account (its user was disabled while this session ended) is left as it is.
    ``auth_refused`` on an OAuth account (the grant or its token refused): only the user
    signing in again can fix it — ``needs_signin``, which the page offers; it is still
    retried, in case the refusal was passing."""
    row = session.get(ImapAccount, account_id)
    if row is None or row.state == "disabled":
        return None
    now = now or utcnow()
    row.needs_signin = auth_refused and row.auth_kind != "password"
    row.failures = (row.failures or 0) + 1
    row.state = "paused"
    row.state_reason = reason[:REASON_MAX]
    row.next_attempt_at = now + dt.timedelta(seconds=backoff_seconds(row.failures, poll_interval))
    return row.next_attempt_at


def claim_lease(session: Session, account_id: int, owner: str, *, seconds: float,
                now: dt.datetime | None = None) -> bool:
    """Take or renew the account's lease for ``owner``: one conditional UPDATE, so of
    several instances claiming at once exactly one wins. True if ``owner`` holds it."""
    now = now or utcnow()
    free = or_(ImapAccount.lease_owner.is_(None), ImapAccount.lease_owner == owner,
               ImapAccount.lease_until.is_(None), ImapAccount.lease_until < now)
    result = session.execute(
        update(ImapAccount).where(ImapAccount.id == account_id, free)
        .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=seconds)))
    return bool(getattr(result, "rowcount", 0) == 1)


def release_lease(session: Session, account_id: int, owner: str) -> None:
    """Give the lease up (if ``owner`` still holds it): another instance may sync now."""
    session.execute(update(ImapAccount)
                    .where(ImapAccount.id == account_id, ImapAccount.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None))


def mark_success(session: Session, account_id: int, *, now: dt.datetime | None = None) -> None:
    """The account synced: active again, failures forgotten. A disabled account (its user
    was disabled while this session ended) keeps its state and reason; only
    ``last_sync_at`` moves."""
    row = session.get(ImapAccount, account_id)
    if row is None:
        return
    row.last_sync_at = now or utcnow()
    if row.initial_synced_at is None:
        row.initial_synced_at = row.last_sync_at
    if row.state == "disabled":
        return
    row.needs_signin = False
    row.state = "active"
    row.state_reason = ""
    row.failures = 0
    row.next_attempt_at = None
