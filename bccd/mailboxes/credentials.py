"""What every connection to a user's mailbox shares, whether it reads (IMAP, ``bccd.imap``)
or sends (SMTP submission, ``bccd.compose``): the verifying TLS context, the failure
classes with their one-line reasons, and OAuth 2.0 access tokens refreshed from the
refresh token — one refresher for both, so a token rotated for IMAP is the one submission
uses next and the other way round.

- :func:`make_ssl_context` — the account's CA file, else the system trust store (which
  honours ``SSL_CERT_FILE``/``SSL_CERT_DIR``); TLS 1.2 at least, host names checked.
- :func:`needs_refresh` / :func:`refresh_oauth` — RFC 6749 §6 through Authlib
  (``mailboxes.oauth``; blocking: call it from a worker thread); a refused refresh is
  :class:`AuthFailure`, an unreachable endpoint :class:`ConnectFailure`. The caller stores
  what it returns (``accounts.save_auth``) before using it: the provider may already have
  revoked the old refresh token.

Every failure is a :class:`MailboxFailure` whose ``reason`` is one short line fit for a
person (no secrets, no stack): :class:`AuthFailure` (credentials refused),
:class:`TlsFailure` (certificate not trusted, handshake failed, no STARTTLS),
:class:`ConnectFailure` (DNS, refused, timeout, connection lost), :class:`ProtocolFailure`
(a command the server refused, a missing capability).
"""

from __future__ import annotations

import dataclasses
import ssl
import time

from bccd.mailboxes import oauth
from bccd.mailboxes.accounts import OAuth2Auth

TOKEN_REFRESH_MARGIN = 300.0  # refresh an access token this many seconds before expiry
TOKEN_HTTP_TIMEOUT = 30.0


class MailboxFailure(Exception):
    """A mailbox-level failure; ``reason`` is what a person is shown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthFailure(MailboxFailure):
    pass


class TlsFailure(MailboxFailure):
    pass


class ConnectFailure(MailboxFailure):
    pass


class ProtocolFailure(MailboxFailure):
    pass


def short(text: object, limit: int = 200) -> str:
    """One line of at most ``limit`` characters (server text, exception messages)."""
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    if len(s) >= 3 and s[0] == "b" and s[1] in "'\"" and s[-1] == s[1]:
        s = s[2:-1]  # imapclient wraps server text as str(bytes)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verifying client context: the account's CA file, else the system trust store."""
    if ca_file:
        ctx = ssl.create_default_context(cafile=ca_file)
    else:
        ctx = ssl.create_default_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def needs_refresh(auth: OAuth2Auth, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    return not auth.access_token or auth.expires_at - TOKEN_REFRESH_MARGIN <= now


def refresh_oauth(auth: OAuth2Auth, *, now: float | None = None) -> OAuth2Auth:
    """Exchange the refresh token for a new access token (RFC 6749 §6, through Authlib:
    ``mailboxes.oauth.refresh``). Blocking. A refused grant is an :class:`AuthFailure`
    (the user must sign in again), anything else a passing failure."""
    now = time.time() if now is None else now
    try:
        data = oauth.refresh(auth.token_url, auth.client_id, auth.client_secret, auth.refresh_token)
    except oauth.Refused as exc:
        raise AuthFailure(str(exc)) from None
    except oauth.Unavailable as exc:
        raise (TlsFailure if exc.tls else ConnectFailure)(str(exc)) from None
    try:
        expires_in = float(data.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    refresh = data.get("refresh_token")
    return dataclasses.replace(
        auth,
        access_token=str(data["access_token"]),
        expires_at=now + expires_in,
        refresh_token=refresh if isinstance(refresh, str) and refresh else auth.refresh_token,
    )
