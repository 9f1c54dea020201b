"""In-process links between the fronts that change mailboxes (HTTP, the Mail page) and
the poller that syncs them, inside one ``bccd serve``.

``MailboxControl`` is made once per process (``runtime.Services.mailboxes``); the poller
attaches its ``stop``/``release``/``wake`` and the IMAP front its ``probe``. Nothing here
imports either: the layers point one way, and a front without a poller (the CLI) gets the
harmless defaults — no stop to wait for, no wake-up, and no probe (``NoProbe``).

- ``await stop(id)``: end the account's sync now and wait until it has ended (a sync in
  flight finishes the messages it is filing, commits its mark and logs out); it is not
  started again until ``release(id)``. A mailbox removal calls ``stop``, deletes, then
  ``release``.
- ``wake()``: re-read the account list now (a mailbox was added or changed).
- ``await probe(account, auth)``: log in and list the folders (``Folder`` records) or raise
  :class:`LoginFailed` with the server's own reason — before a password mailbox is saved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bccd.errors import BccdError
from bccd.mailboxes.accounts import AccountConfig, Auth


class LoginFailed(BccdError):
    """Logging in to the mailbox failed; the message is the server's (or the network's)
    one-line reason. Nothing was saved."""

    status = 422

    def __init__(self, reason: str, *, kind: str = "login") -> None:
        super().__init__(reason)
        self.kind = kind  # auth | tls | connect | protocol


@dataclass(frozen=True, slots=True)
class Folder:
    name: str
    special: str  # "\\Sent", "\\All", … or ""
    selectable: bool = True


Probe = Callable[[AccountConfig, Auth], Awaitable[list[Folder]]]


async def _no_probe(account: AccountConfig, auth: Auth) -> list[Folder]:
    raise LoginFailed("this process cannot reach mail servers", kind="connect")


async def _no_stop(account_id: int) -> None:
    return None


def _nothing(*args: object) -> None:
    return None


class MailboxControl:
    def __init__(self) -> None:
        self._stop: Callable[[int], Awaitable[None]] = _no_stop
        self._release: Callable[[int], None] = _nothing
        self._wake: Callable[[], None] = _nothing
        self.probe: Probe = _no_probe

    def attach_poller(self, *, stop: Callable[[int], Awaitable[None]],
                      release: Callable[[int], None], wake: Callable[[], None]) -> None:
        self._stop, self._release, self._wake = stop, release, wake

    def detach_poller(self) -> None:
        self._stop, self._release, self._wake = _no_stop, _nothing, _nothing

    async def stop(self, account_id: int) -> None:
        await self._stop(account_id)

    def release(self, account_id: int) -> None:
        self._release(account_id)

    def wake(self) -> None:
        self._wake()
