"""One SMTP submission through the user's own mailbox (SPEC §7, §12), with ``aiosmtplib``.

``submit(mailbox, auth, keep=…, sender=…, recipients=…, data=…)`` connects to the
mailbox's submission server — implicit TLS (``ssl``) or ``starttls`` (refused when the
server does not offer it: never a plaintext login) with the certificate checked against
the system trust store or the mailbox's CA file (``mailboxes.credentials``) —, logs in
with the mailbox's password or OAuth 2.0 access token (XOAUTH2 / OAUTHBEARER; refreshed
from the refresh token when due, and once more when the server refuses a cached one, by
the same refresher IMAP uses; ``keep`` stores a refreshed token before it is used), and
sends. Returns a ``Result``: which recipients the server accepted (the message went to
them), which it refused temporarily (``deferred``, 4xx: to be retried) and which for good
(``refused``, 5xx), each with the server's own reply. A refusal of the whole message
(MAIL FROM, DATA) is the same reply for every recipient.

Raises, before anything was sent: :class:`MailboxProblem` — the mailbox needs the user's
attention (login refused, certificate not trusted, no STARTTLS) — and :class:`Unreachable`
— try again later (DNS, refused, timeout, the connection lost, a 4xx to the login). Both
carry a one-line ``reason`` without secrets.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiosmtplib

from bccd.compose.context import Mailbox
from bccd.log import get_logger
from bccd.mailboxes.accounts import Auth, OAuth2Auth
from bccd.mailboxes.credentials import (
    AuthFailure,
    MailboxFailure,
    TlsFailure,
    make_ssl_context,
    needs_refresh,
    refresh_oauth,
    short,
)

log = get_logger("bccd.compose")

TIMEOUT = 60.0


class SubmitProblem(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MailboxProblem(SubmitProblem):
    """The mailbox cannot send until the user fixes it (password, certificate)."""


class LoginRefused(MailboxProblem):
    """The server refused the mailbox's credentials."""


class Unreachable(SubmitProblem):
    """The server could not be reached or talked to now: a temporary failure."""


@dataclass(frozen=True, slots=True)
class Result:
    accepted: tuple[str, ...] = ()
    deferred: dict[str, str] = field(default_factory=dict)   # address → "450 4.2.1 …"
    refused: dict[str, str] = field(default_factory=dict)    # address → "550 5.1.1 …"


def _reply(code: int, message: str) -> str:
    return short(f"{code} {message}", 500)


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _classify(exc: BaseException, where: str) -> SubmitProblem:
    if isinstance(exc, SubmitProblem):
        return exc
    if isinstance(exc, MailboxFailure):
        cls = Unreachable if not isinstance(exc, AuthFailure | TlsFailure) else MailboxProblem
        return cls(exc.reason)
    tls = _tls_error(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return MailboxProblem(f"the TLS certificate of {where} is not trusted: "
                              f"{short(tls.verify_message or tls, 120)}")
    if tls is not None:
        return MailboxProblem(f"TLS with {where} failed: {short(tls.reason or tls, 120)}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        if 400 <= exc.code < 500:
            return Unreachable(f"{where} could not check the login now: {_reply(exc.code, exc.message)}")
        return LoginRefused(f"{where} refused the login: {_reply(exc.code, exc.message)}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return Unreachable(f"{where} answered {_reply(exc.code, exc.message)}")
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return Unreachable(f"timed out talking to {where}")
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return Unreachable(f"cannot talk to {where}: {short(exc, 160)}")
    return Unreachable(f"unexpected error with {where}: {type(exc).__name__}")


async def _login(smtp: aiosmtplib.SMTP, mailbox: Mailbox, auth: Auth) -> None:
    if not smtp.supports_extension("auth"):
        raise MailboxProblem(f"{mailbox.host}:{mailbox.port} offers no login (SMTP AUTH)")
    if not isinstance(auth, OAuth2Auth):
        await smtp.login(mailbox.username, auth.password)
        return
    if auth.mechanism == "OAUTHBEARER":
        token = (f"n,a={mailbox.username},\x01host={mailbox.host}\x01port={mailbox.port}"
                 f"\x01auth=Bearer {auth.access_token}\x01\x01")
        failure_answer = b"AQ=="  # %x01: ends a failed exchange (RFC 7628 §3.2.3)
    else:
        token = f"user={mailbox.username}\x01auth=Bearer {auth.access_token}\x01\x01"
        failure_answer = b""
    mech = auth.mechanism.encode()
    resp = await smtp.execute_command(b"AUTH", mech, base64.b64encode(token.encode()))
    if resp.code == 334:  # an error challenge: answer it to get the final reply
        resp = await smtp.execute_command(failure_answer)
    if resp.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(resp.code, resp.message)


async def _send(mailbox: Mailbox, auth: Auth, sender: str, recipients: Sequence[str],
                data: bytes, smtputf8: bool, local_hostname: str) -> Result:
    where = f"{mailbox.host}:{mailbox.port}"
    smtp = aiosmtplib.SMTP(hostname=mailbox.host, port=mailbox.port,
                           use_tls=mailbox.security == "ssl", start_tls=False,
                           tls_context=make_ssl_context(mailbox.ca_file), timeout=TIMEOUT,
                           local_hostname=local_hostname)
    try:
        await smtp.connect()
        if mailbox.security == "starttls":
            await smtp.ehlo()
            if not smtp.supports_extension("starttls"):
                raise MailboxProblem(f"{where} does not offer STARTTLS")
            await smtp.starttls()
        await smtp.ehlo()
        await _login(smtp, mailbox, auth)
        options = ["SMTPUTF8"] if smtputf8 else []
        try:
            await smtp.mail(sender, options=options)
        except aiosmtplib.SMTPResponseException as exc:  # the whole message, every recipient
            every = dict.fromkeys(recipients, _reply(exc.code, exc.message))
            return Result(refused=every) if exc.code >= 500 else Result(deferred=every)
        accepted: list[str] = []
        deferred: dict[str, str] = {}
        refused: dict[str, str] = {}
        for rcpt in recipients:
            try:
                await smtp.rcpt(rcpt)
                accepted.append(rcpt)
            except aiosmtplib.SMTPRecipientRefused as exc:
                (refused if exc.code >= 500 else deferred)[rcpt] = _reply(exc.code, exc.message)
        if not accepted:
            await smtp.rset()
            return Result((), deferred, refused)
        try:
            await smtp.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            reply = _reply(exc.code, exc.message)
            target = refused if exc.code >= 500 else deferred
            target.update(dict.fromkeys(accepted, reply))
            return Result((), deferred, refused)
        return Result(tuple(accepted), deferred, refused)
    except Exception as exc:
        raise _classify(exc, where) from None
    finally:
        try:
            if smtp.is_connected:
                await asyncio.wait_for(smtp.quit(), 5)
        except Exception:
            smtp.close()


async def submit(mailbox: Mailbox, auth: Auth, *, keep: Callable[[OAuth2Auth], None],
                 reload: Callable[[], Auth], sender: str, recipients: Sequence[str],
                 data: bytes, smtputf8: bool, local_hostname: str) -> Result:
    """One submission (module docstring); ``keep`` (store a refreshed token) and
    ``reload`` (the stored credentials now) are blocking and run in a worker thread with
    the refresh, so a rotated refresh token is stored even if this is cancelled.

    A refresh the provider refuses is tried again with the stored credentials when they
    hold another refresh token: the mailbox's sync (or another instance) rotated it
    meanwhile, and providers that rotate refresh tokens refuse the old one."""

    def refresh(old: OAuth2Auth) -> OAuth2Auth:
        try:
            new = refresh_oauth(old)
        except AuthFailure:
            for wait in (0.0, 1.0):  # a concurrent refresh may still be storing its token
                time.sleep(wait)
                latest = reload()
                if isinstance(latest, OAuth2Auth) and latest.refresh_token != old.refresh_token:
                    log.info("submission_oauth_rotated_elsewhere", account=mailbox.account_id)
                    return latest if not needs_refresh(latest) else refresh(latest)
            raise
        keep(new)
        return new

    refreshed = False
    try:
        if isinstance(auth, OAuth2Auth) and needs_refresh(auth):
            auth = await asyncio.shield(asyncio.to_thread(refresh, auth))
            refreshed = True
            log.info("submission_oauth_refreshed", account=mailbox.account_id)
    except MailboxFailure as exc:
        raise _classify(exc, mailbox.host) from None
    try:
        return await _send(mailbox, auth, sender, recipients, data, smtputf8, local_hostname)
    except LoginRefused:
        if not isinstance(auth, OAuth2Auth) or refreshed:
            raise
    try:  # the server refused a cached access token: refresh it once and try again
        auth = await asyncio.shield(asyncio.to_thread(refresh, auth))
    except MailboxFailure as exc:
        raise _classify(exc, mailbox.host) from None
    log.info("submission_oauth_refreshed", account=mailbox.account_id, after="login_refused")
    return await _send(mailbox, auth, sender, recipients, data, smtputf8, local_hostname)
