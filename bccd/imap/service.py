"""Mailbox sync inside ``bccd serve``: the poller and the write-back worker."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bccd.imap.poller import run_poller
from bccd.imap.writeback import run_writeback

if TYPE_CHECKING:
    from bccd.service import Services


async def poller(services: Services, stop: asyncio.Event) -> None:
    await run_poller(services.settings, services.db, services.pipeline, stop)


async def writeback(services: Services, stop: asyncio.Event) -> None:
    await run_writeback(services.settings, services.db, stop)


def register(services: Services) -> None:
    services.workers += [poller, writeback]
