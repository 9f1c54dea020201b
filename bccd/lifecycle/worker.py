"""The periodic lifecycle worker of ``bccd serve``.

``lifecycle_worker`` (one of ``bccd.service.WORKERS``): ``FIRST_DELAY`` (or
``retention.interval``, if shorter) after the start and then every
``retention.interval`` it runs ``retention.run_once`` — expired rejections and
quarantined copies are purged, unreferenced blobs collected — in the database threads,
and logs what it removed. A failed pass is logged and retried at the next interval; the
worker returns promptly when the stop event is set, and a pass under way ends at its
next batch (``retention.run_once``'s ``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING

from bccd.lifecycle import retention
from bccd.log import get_logger

if TYPE_CHECKING:
    from bccd.runtime import Services

log = get_logger("bccd.lifecycle.worker")

FIRST_DELAY = 60.0


async def lifecycle_worker(services: Services, stop: asyncio.Event) -> None:
    interval = float(services.settings.retention.interval)
    delay = min(FIRST_DELAY, interval)
    halt = threading.Event()  # ``stop``, for the pass in its database thread

    async def mirror() -> None:
        await stop.wait()
        halt.set()

    mirroring = asyncio.create_task(mirror())
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                return
            delay = interval
            try:
                report = await services.db.run(retention.run_once, services.db, services.blobs,
                                               services.settings, stop=halt)
            except Exception as exc:  # next interval tries again
                log.warning("lifecycle_pass_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            blobs = report.blobs
            if (report.rejections or report.quarantined or report.grants or blobs.deleted or blobs.held
                    or blobs.stopped):
                log.info("lifecycle_pass", **report.as_dict())
    finally:
        halt.set()
        mirroring.cancel()
