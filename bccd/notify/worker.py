"""The background workers ``bccd serve`` runs for the outbox (mail, quarantine release …).

``register(services)`` (called by ``bccd.service``) adds:

- ``outbox_worker``: performs due outbox jobs (``bccd.notify.outbox.run``) with the
  handler table ``HANDLERS`` — dispatch is by job ``kind``; a new kind of durable work
  (webhook deliveries, …) means one handler and one line in that table;
- ``outbox_cleanup_worker``: every ``CLEANUP_INTERVAL`` deletes finished (done or failed)
  outbox jobs older than ``OUTBOX_KEEP``.

Quarantined copies past ``retention.quarantine`` are purged by
``bccd.ingest.quarantine.purge_expired``, which the lifecycle worker
(``bccd.lifecycle.worker``) runs on the ``retention.interval`` schedule.

Both return promptly when the stop event is set; all database work goes through
``Database.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bccd.ingest import quarantine
from bccd.log import get_logger
from bccd.notify import outbound, outbox, webhooks

if TYPE_CHECKING:
    from bccd.service import Services

log = get_logger("bccd.notify.worker")

HANDLERS: Mapping[str, outbox.JobHandler] = {
    outbound.MAIL_KIND: outbound.deliver_job,
    quarantine.RELEASE_KIND: quarantine.release_job,
    webhooks.KIND: webhooks.deliver_job,
}

CLEANUP_INTERVAL = 3600.0
CLEANUP_FIRST = 60.0
OUTBOX_KEEP = dt.timedelta(days=7)


def register(services: Services) -> None:
    services.workers.append(outbox_worker)
    services.workers.append(outbox_cleanup_worker)


async def outbox_worker(services: Services, stop: asyncio.Event) -> None:
    log.info("outbox_worker_started", kinds=sorted(HANDLERS))
    await outbox.run(services, HANDLERS, stop)


async def cleanup_once(services: Services) -> int:
    db = services.db
    jobs = await db.run(outbox.purge_finished, db, OUTBOX_KEEP)
    if jobs:
        log.info("outbox_jobs_purged", jobs=jobs)
    return jobs


async def outbox_cleanup_worker(
    services: Services, stop: asyncio.Event, *, interval: float = CLEANUP_INTERVAL,
    first: float = CLEANUP_FIRST,
) -> None:
    delay = first
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return
        try:
            await cleanup_once(services)
        except Exception as exc:  # try again next round
            log.warning("outbox_cleanup_failed", error=f"{type(exc).__name__}: {exc}")
        delay = interval
