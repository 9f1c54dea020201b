"""A connection the worker thread opens after its caller stopped waiting (the poller
stopping, an account removed) is closed, not left for the garbage collector."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from bccd.imap import client
from bccd.mailboxes.accounts import AccountConfig, PasswordAuth
from tests.support.dovecot import Dovecot
from tests.support.wait import wait_until_async


async def test_a_connection_opened_for_a_cancelled_connect_is_closed(
        dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    account = AccountConfig(
        id=1, user_id=1, host="127.0.0.1", port=dovecot.ssl_port, security="ssl",
        username=imap_user, auth_kind="password", ca_file=dovecot.ca_file, folders=(),
        on_archive="none", state="active")
    gate, started = threading.Event(), threading.Event()
    opened: list[client.ImapConnection] = []
    real = client.open_connection

    def slow_open(*args: Any) -> client.ImapConnection:
        started.set()
        gate.wait(10)  # the caller is cancelled meanwhile
        conn = real(*args)
        opened.append(conn)
        return conn

    monkeypatch.setattr(client, "open_connection", slow_open)
    task = asyncio.create_task(client.connect(account, PasswordAuth(dovecot.users[imap_user])))
    await wait_until_async(started.is_set)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    await wait_until_async(lambda: bool(opened))  # logged in, for nobody
    await wait_until_async(lambda: opened[0].client.socket().fileno() == -1)


async def test_a_logout_whose_caller_is_cancelled_still_closes_the_connection(
        dovecot: Dovecot, imap_user: str) -> None:
    """The LOGOUT waits behind an IDLE in the session's thread; the poller stopping
    cancels the close meanwhile. The LOGOUT must still run once the IDLE ends."""
    account = AccountConfig(
        id=1, user_id=1, host="127.0.0.1", port=dovecot.ssl_port, security="ssl",
        username=imap_user, auth_kind="password", ca_file=dovecot.ca_file, folders=(),
        on_archive="none", state="active")
    imap = await client.connect(account, PasswordAuth(dovecot.users[imap_user]))
    await imap.select("INBOX", readonly=True)
    stop_idle = threading.Event()
    idle = asyncio.create_task(imap.idle_wait(30, stop_idle))
    await asyncio.sleep(0.2)  # IDLE under way in the session's thread
    closing = asyncio.create_task(imap.close())
    await asyncio.sleep(0.1)
    closing.cancel()  # a second cancel at shutdown
    with pytest.raises(asyncio.CancelledError):
        await closing
    stop_idle.set()
    assert await asyncio.wait_for(idle, 10) is False
    await wait_until_async(lambda: imap.conn.client.socket().fileno() == -1)
