"""Connecting to an IMAP account: TLS, login, and a thin async face over ``imapclient``.

Why ``imapclient`` in a worker thread rather than ``aioimaplib``: imapclient is the
maintained, widely deployed client with parsed FETCH/LIST responses, SPECIAL-USE lookup,
MOVE/UIDPLUS helpers, Gmail X-GM-* attributes, IDLE and XOAUTH2/OAUTHBEARER; aioimaplib
leaves response parsing to the caller. Every blocking call runs on the account's own
single-thread executor (:class:`AsyncImap`), so the event loop never blocks and one
connection is never used by two threads at once. The cost is one thread per connected
account, fine for the tens-to-hundreds of mailboxes a bccd instance serves.

Takes an :class:`~bccd.mailboxes.accounts.AccountConfig` and its decrypted credentials;
returns a logged-in connection. TLS is always on: implicit (``ssl``, port 993) or
``starttls`` (refused when the server does not offer it — never a plaintext login).
Certificates are verified against the system trust store (OpenSSL's default paths, which
honour ``SSL_CERT_FILE``/``SSL_CERT_DIR``) or, when the account has one, only against its
CA file; TLS 1.2 is the minimum. OAuth 2.0 access tokens are refreshed with the refresh
token shortly before they expire (and once more if the server refuses a cached token);
the refreshed credentials are handed back for the caller to store encrypted.

Failure: every problem becomes an :class:`ImapFailure` (``mailboxes.credentials.
MailboxFailure``, shared with mail submission) whose ``reason`` is one short line fit for
``imap list`` (no secrets, no stack): :class:`AuthFailure` (credentials refused, refresh
token refused), :class:`TlsFailure` (certificate not trusted, handshake failed, no
STARTTLS), :class:`ConnectFailure` (DNS, refused, timeout, connection lost),
:class:`ProtocolFailure` (a command the server refused, a missing capability).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import imapclient
from imapclient import exceptions as imap_exc
from imapclient.imap_utf7 import decode as utf7_decode

from bccd.crypto import SecretBox
from bccd.log import get_logger
from bccd.mailboxes import credentials
from bccd.mailboxes.accounts import (
    AccountConfig,
    Auth,
    OAuth2Auth,
    PasswordAuth,
    account_config,
    get_account,
    load_auth,
    save_auth,
)
from bccd.store.db import Database

log = get_logger("bccd.imap")
T = TypeVar("T")

# imapclient logs whole commands and responses (message bodies, AUTHENTICATE
# continuations) at DEBUG; keep them out of our logs whatever the root level is.
logging.getLogger("imapclient").setLevel(logging.INFO)

CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 120.0


# the failure classes, the TLS context and the OAuth 2.0 refresher are shared with mail
# submission (``bccd.compose``): they live in ``bccd.mailboxes.credentials``
ImapFailure = credentials.MailboxFailure
AuthFailure = credentials.AuthFailure
TlsFailure = credentials.TlsFailure
ConnectFailure = credentials.ConnectFailure
ProtocolFailure = credentials.ProtocolFailure
make_ssl_context = credentials.make_ssl_context
needs_refresh = credentials.needs_refresh
refresh_oauth = credentials.refresh_oauth
_short = credentials.short


# ---------------------------------------------------------------- connection


@dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str
    flags: frozenset[str]  # lower-cased: "\\all", "\\sent", "\\noselect" …

    @property
    def selectable(self) -> bool:
        return not ({"\\noselect", "\\nonexistent"} & self.flags)


@dataclass(frozen=True, slots=True)
class SelectInfo:
    uidvalidity: int
    uidnext: int | None
    exists: int


def _classify(exc: BaseException, where: str) -> ImapFailure:
    if isinstance(exc, ImapFailure):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = _short(getattr(exc, "verify_message", None) or exc, 120)
        return TlsFailure(f"TLS certificate of {where} not trusted: {why}")
    if isinstance(exc, ssl.SSLError):
        why = _short(getattr(exc, "reason", None) or exc, 120)
        return TlsFailure(f"TLS with {where} failed: {why}")
    if isinstance(exc, socket.gaierror):
        return ConnectFailure(f"cannot resolve {where}")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailure(f"connection to {where} refused")
    if isinstance(exc, TimeoutError | socket.timeout):
        return ConnectFailure(f"timed out talking to {where}")
    if isinstance(exc, imap_exc.IMAPClientAbortError):
        return ConnectFailure(f"connection to {where} lost: {_short(exc, 120)}")
    if isinstance(exc, OSError):
        return ConnectFailure(f"cannot talk to {where}: {_short(exc.strerror or exc, 120)}")
    if isinstance(exc, imap_exc.IMAPClientError):
        return ProtocolFailure(f"server {where} refused a command: {_short(exc, 160)}")
    return ProtocolFailure(f"unexpected error with {where}: {type(exc).__name__}")


class ImapConnection:
    """A logged-in ``IMAPClient`` (UID mode) with the few helpers sync needs. Blocking."""

    def __init__(self, client: imapclient.IMAPClient, where: str) -> None:
        self.client = client
        self.where = where
        self.capabilities = frozenset(_cap(c) for c in client.capabilities())

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    @property
    def is_gmail(self) -> bool:
        return self.has("X-GM-EXT-1")

    def list_folders(self) -> list[FolderInfo]:
        out = []
        for flags, _delim, name in self.client.list_folders():
            out.append(
                FolderInfo(
                    name=name if isinstance(name, str) else utf7_decode(name),
                    flags=frozenset(_cap(f).lower() for f in flags),
                )
            )
        return out

    def select(self, folder: str, *, readonly: bool) -> SelectInfo:
        info = self.client.select_folder(folder, readonly=readonly)
        uidvalidity = info.get(b"UIDVALIDITY")
        if uidvalidity is None:
            raise ProtocolFailure(f"server {self.where} gave no UIDVALIDITY for {folder!r}")
        uidnext = info.get(b"UIDNEXT")
        return SelectInfo(int(uidvalidity), int(uidnext) if uidnext else None, int(info.get(b"EXISTS", 0)))

    def search(self, criteria: Sequence[Any]) -> list[int]:
        return sorted(int(u) for u in self.client.search(list(criteria)))

    def fetch(self, uids: Iterable[int], items: Sequence[str]) -> dict[int, dict[bytes, Any]]:
        uids = list(uids)
        if not uids:
            return {}
        return {int(k): v for k, v in self.client.fetch(uids, list(items)).items()}

    def last_uid(self) -> int:
        """The highest UID in the selected folder (0 when empty)."""
        found = self.client.fetch("*", ["UID"])
        return max((int(k) for k in found), default=0)

    def idle_wait(self, timeout: float, cancel: threading.Event) -> bool:
        """IDLE on the selected folder until new mail (True), ``timeout`` or ``cancel``."""
        self.client.idle()
        try:
            deadline = time.monotonic() + timeout
            while not cancel.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                for resp in self.client.idle_check(timeout=min(1.0, left)):
                    if len(resp) >= 2 and resp[1] in (b"EXISTS", b"RECENT"):
                        return True
                    if resp and resp[0] == b"BYE":
                        raise ConnectFailure(f"server {self.where} closed the connection")
            return False
        finally:
            with contextlib.suppress(Exception):
                self.client.idle_done()

    def logout(self) -> None:
        try:
            self.client.logout()
        except Exception:
            with contextlib.suppress(Exception):
                self.client.shutdown()


def _cap(value: bytes | str) -> str:
    return (value.decode("ascii", "replace") if isinstance(value, bytes) else value).upper()


def open_connection(account: AccountConfig, auth: Auth) -> ImapConnection:
    """Connect, secure (implicit TLS or STARTTLS), log in. Blocking; raises ImapFailure."""
    where = f"{account.host}:{account.port}"
    ctx = make_ssl_context(account.ca_file)
    client: imapclient.IMAPClient | None = None
    try:
        timeout = imapclient.SocketTimeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT)
        if account.security == "ssl":
            client = imapclient.IMAPClient(
                account.host, port=account.port, ssl=True, ssl_context=ctx, timeout=timeout
            )
        else:
            client = imapclient.IMAPClient(account.host, port=account.port, ssl=False, timeout=timeout)
            if not client.has_capability("STARTTLS"):
                raise TlsFailure(f"server {where} does not offer STARTTLS")
            client.starttls(ctx)
        _login(client, account, auth, where)
        return ImapConnection(client, where)
    except BaseException as exc:
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()
        if isinstance(exc, Exception):
            raise _classify(exc, where) from None
        raise


def _login(client: imapclient.IMAPClient, account: AccountConfig, auth: Auth, where: str) -> None:
    try:
        if isinstance(auth, PasswordAuth):
            if client.has_capability("LOGINDISABLED"):
                raise AuthFailure(f"server {where} does not allow LOGIN")
            client.login(account.username, auth.password)
        elif auth.mechanism == "OAUTHBEARER":
            client.oauthbearer_login(account.username, auth.access_token)
        else:
            client.oauth2_login(account.username, auth.access_token, mech="XOAUTH2")
    except imap_exc.LoginError as exc:
        raise AuthFailure(f"login to {where} as {account.username} refused: {_short(exc, 120)}") from None


class AsyncImap:
    """An :class:`ImapConnection` driven from asyncio through its own worker thread."""

    def __init__(self, conn: ImapConnection, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        self.conn = conn
        self._executor = executor
        self.where = conn.where

    @property
    def capabilities(self) -> frozenset[str]:
        return self.conn.capabilities

    def has(self, capability: str) -> bool:
        return self.conn.has(capability)

    @property
    def is_gmail(self) -> bool:
        return self.conn.is_gmail

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            raise _classify(exc, self.where) from None

    async def list_folders(self) -> list[FolderInfo]:
        return await self.call(self.conn.list_folders)

    async def select(self, folder: str, *, readonly: bool = True) -> SelectInfo:
        return await self.call(self.conn.select, folder, readonly=readonly)

    async def search(self, criteria: Sequence[Any]) -> list[int]:
        return await self.call(self.conn.search, criteria)

    async def fetch(self, uids: Iterable[int], items: Sequence[str]) -> dict[int, dict[bytes, Any]]:
        return await self.call(self.conn.fetch, list(uids), items)

    async def last_uid(self) -> int:
        return await self.call(self.conn.last_uid)

    async def idle_wait(self, seconds: float, cancel: threading.Event) -> bool:
        """IDLE in the worker thread; ``cancel`` (a threading.Event) ends it within 1 s."""
        return await self.call(self.conn.idle_wait, seconds, cancel)

    async def close(self) -> None:
        """LOGOUT, queued behind the work still running in the session's thread (an IDLE
        ends within 1 s of its cancel). Queued at once and not withdrawn if the caller is
        cancelled meanwhile (a stop): the socket is always closed, never left to the GC."""
        try:
            work = self._executor.submit(self.conn.logout)
        except RuntimeError:  # closed already
            return
        self._executor.shutdown(wait=False)
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.wrap_future(work))


def _close_orphan(work: concurrent.futures.Future[Any]) -> None:
    if work.cancelled() or work.exception() is not None:
        return
    conn = work.result()
    if isinstance(conn, ImapConnection):
        with contextlib.suppress(Exception):
            conn.client.shutdown()  # the socket only: no LOGOUT round trip for nobody


def new_executor(account_id: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"imap-{account_id}")


async def connect(
    account: AccountConfig,
    auth: Auth,
    *,
    keep: Callable[[OAuth2Auth], None] | None = None,
) -> AsyncImap:
    """Refresh OAuth if due (``keep`` stores the result), connect, log in.

    ``keep`` (blocking) runs in the same worker-thread job as the refresh: cancelling this
    coroutine (shutdown, a doctor's timeout) while the token endpoint answers must not
    lose a *rotated* refresh token, which the provider may already have revoked the old
    one for. With OAuth, a refused cached access token is refreshed once and the login
    retried.
    """
    executor = new_executor(account.id)

    async def run(fn: Callable[..., T], *args: Any) -> T:
        work = executor.submit(fn, *args)
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            # the thread goes on: a connection it opens now is nobody's — close it
            work.add_done_callback(_close_orphan)
            raise

    def refresh(old: OAuth2Auth) -> OAuth2Auth:
        new = refresh_oauth(old)
        if keep is not None:
            keep(new)
        return new

    try:
        refreshed = False
        if isinstance(auth, OAuth2Auth) and needs_refresh(auth):
            auth = await run(refresh, auth)
            refreshed = True
            log.info("imap_oauth_refreshed", account=account.id)
        try:
            conn = await run(open_connection, account, auth)
        except AuthFailure:
            if not isinstance(auth, OAuth2Auth) or refreshed:
                raise
            auth = await run(refresh, auth)
            log.info("imap_oauth_refreshed", account=account.id, after="login_refused")
            conn = await run(open_connection, account, auth)
    except BaseException:
        executor.shutdown(wait=False)
        raise
    return AsyncImap(conn, executor)


def find_special(folders: Iterable[FolderInfo], flag: str) -> str | None:
    """The folder carrying SPECIAL-USE ``flag`` (e.g. ``\\Archive``), never by name."""
    want = flag.lower()
    for f in folders:
        if want in f.flags and f.selectable:
            return f.name
    return None


async def connect_account(db: Database, box: SecretBox, account_id: int) -> tuple[AccountConfig, AsyncImap]:
    """Load the account and its credentials, connect and log in.

    Credentials still encrypted under an old key are re-encrypted under the current one; a
    refreshed OAuth token is stored (encrypted) before it is used. Raises
    :class:`ImapFailure`, or ``bccd.errors.NotFound``/``SecretError`` for a missing
    account or undecryptable credentials.
    """

    def load() -> tuple[AccountConfig, Auth]:
        with db.transaction() as session:
            row = get_account(session, account_id)
            auth = load_auth(session, box, account_id)
            if not box.is_current(row.secret_enc):  # key rotated: re-encrypt under the new key
                save_auth(session, box, account_id, auth)
            return account_config(row), auth

    def save(new: OAuth2Auth) -> None:  # in the refresh's thread (``connect``)
        with db.transaction() as session:
            save_auth(session, box, account_id, new)

    account, auth = await db.run(load)
    imap = await connect(account, auth, keep=save)
    return account, imap
