"""The background workers ``bccd serve`` runs for the outbox (mail, quarantine release …).

- ``outbox_worker(db, handlers, stop)``: performs due outbox jobs (``bccd.notify.jobs.run``)
  with the handler table ``bccd serve`` gives it (``bccd.service.outbox_handlers``) —
  dispatch is by job ``kind``; a new kind of durable work means one handler and one line
  in that table;
- ``outbox_cleanup_worker(db, stop)``: every ``CLEANUP_INTERVAL`` deletes finished (done or
  failed) outbox jobs older than ``OUTBOX_KEEP`` — with several instances, once per
  interval by the one that claims the pass's lease (``bccd.store.leases``).

Outbox jobs themselves are claimed with ``SKIP LOCKED`` and a lease each
(``bccd.store.outbox``): with several instances each job is performed by one of them.

Quarantined copies past ``retention.quarantine`` are purged by
``bccd.quarantine.copies.purge_expired``, which the lifecycle worker
(``bccd.lifecycle.worker``) runs on the ``retention.interval`` schedule.

Both return promptly when the stop event is set; all database work goes through
``Database.run``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping

from bccd.log import get_logger
from bccd.notify import jobs
from bccd.store import leases, outbox
from bccd.store.db import Database

log = get_logger("bccd.notify.worker")

CLEANUP_INTERVAL = 3600.0
CLEANUP_FIRST = 60.0
OUTBOX_KEEP = dt.timedelta(days=7)
CLEANUP_LEASE = "outbox-cleanup"
CLEANUP_LEASE_SECONDS = 600.0  # one DELETE: far shorter


async def outbox_worker(db: Database, handlers: Mapping[str, jobs.JobHandler],
                        stop: asyncio.Event) -> None:
    log.info("outbox_worker_started", kinds=sorted(handlers))
    await jobs.run(db, handlers, stop)


async def cleanup_once(db: Database) -> int:
    purged = await db.run(outbox.purge_finished, db, OUTBOX_KEEP)
    if purged:
        log.info("outbox_jobs_purged", jobs=purged)
    return purged


async def outbox_cleanup_worker(
    db: Database, stop: asyncio.Event, *, interval: float = CLEANUP_INTERVAL,
    first: float = CLEANUP_FIRST,
) -> None:
    async for owner in leases.rounds(db, CLEANUP_LEASE, stop, first=first, every=interval,
                                     lease=CLEANUP_LEASE_SECONDS,
                                     failed="outbox_cleanup_failed"):
        done = False
        try:
            await cleanup_once(db)
            done = True
        except Exception as exc:  # try again next round
            log.warning("outbox_cleanup_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            try:
                await db.run(leases.finish, db, CLEANUP_LEASE, owner, completed=done)
            except Exception as exc:  # the lease runs out by itself
                log.warning("outbox_cleanup_failed", error=f"{type(exc).__name__}: {exc}")
