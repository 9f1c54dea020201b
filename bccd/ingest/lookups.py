"""Directory reads on the hot path, coalesced ("single flight"), never cached.

``Lookups(db, settings)``:

- ``await recipient(address)`` → ``Target`` or a refusal ``Reply`` (``recipients.resolve``,
  SPEC §2/§3), for RCPT;
- ``await shared(key, fn, *args)`` → ``fn(*args)`` run in the database threads, for any
  other read the pipeline makes per message (whose copies a message's recipients are,
  a user's own addresses).

Concurrent calls with the same key share ONE database read that is already in flight;
a call that arrives when none is in flight starts a new one. No answer outlives its read
(a call may get the answer of a read that started a moment before it arrived):
a user disabled (or an address rotated) by another process is refused by the first read
that starts after that commit — the same promptness as reading every time, at a fraction
of the reads under load (twenty sessions sending for one user share one read).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from bccd.config import Settings
from bccd.ingest import recipients
from bccd.ingest.types import Target
from bccd.replies import Reply
from bccd.store.db import Database

T = TypeVar("T")


class Lookups:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}
        self.reads = 0      # statistics: reads started, calls served
        self.calls = 0

    async def recipient(self, address: str) -> Target | Reply:
        return await self.shared(("rcpt", address), self._rcpt, address)

    def _rcpt(self, address: str) -> Target | Reply:
        with self.db.read_only() as s:
            return recipients.resolve(s, self.settings, address)

    async def shared(self, key: Hashable, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the database threads, shared with the calls of the same ``key``
        that arrive while it runs."""
        self.calls += 1
        fut = self._flights.get(key)
        if fut is None or fut.get_loop() is not asyncio.get_running_loop():
            self.reads += 1
            fut = asyncio.ensure_future(self.db.run(fn, *args))
            self._flights[key] = fut
            fut.add_done_callback(functools.partial(self._landed, key))
        return await asyncio.shield(fut)

    def _landed(self, key: Hashable, fut: asyncio.Future[Any]) -> None:
        if self._flights.get(key) is fut:
            del self._flights[key]
        if not fut.cancelled():
            fut.exception()  # retrieved: a failure is the callers', not "never retrieved"
