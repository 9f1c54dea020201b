"""The periodic lifecycle worker of ``bccd serve``.

``lifecycle_worker`` (one of ``bccd.service.WORKERS``): ``FIRST_DELAY`` (or
``retention.interval``, if shorter) after the start and then every
``retention.interval`` it runs ``retention.run_once`` — expired rejections and
quarantined copies are purged, unreferenced blobs collected from both stores — in the
database threads, and logs what it removed (``lifecycle_pass``, one line per pass).

With several instances on one database the pass runs once per interval, on the instance
that claims its lease (``bccd.store.leases``, pass ``"retention"``); the others skip that
round. The holder renews the lease every third of ``retention.lease`` while the pass
runs; if a renewal finds the lease taken over (this instance stalled past it), the pass
ends at its next batch. An instance that dies mid-pass leaves only whole batches behind
(each is one transaction) and no completion: once its lease runs out, the next instance
to wake up runs the pass.

A failed pass is logged and retried at the next interval; the worker returns promptly
when the stop event is set, and a pass under way ends at its next batch
(``retention.run_once``'s ``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING

from bccd.lifecycle import retention
from bccd.log import get_logger
from bccd.store import leases

if TYPE_CHECKING:
    from bccd.runtime import Services

log = get_logger("bccd.lifecycle.worker")

FIRST_DELAY = 60.0
LEASE_NAME = "retention"


async def _keep(services: Services, owner: str, stop: asyncio.Event,
                halt: threading.Event) -> None:
    """Renew the pass's lease until cancelled; set ``halt`` when the server stops or the
    lease is lost."""
    db, lease = services.db, float(services.settings.retention.lease)
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=lease / 3)
        if stop.is_set():
            halt.set()
            return
        try:
            kept = await db.run(leases.renew, db, LEASE_NAME, owner, lease=lease)
        except Exception as exc:  # the next try may work: the lease has two thirds to go
            log.warning("lifecycle_lease_renewal_failed", error=f"{type(exc).__name__}: {exc}")
            continue
        if not kept:
            log.warning("lifecycle_lease_lost", owner=owner)
            halt.set()
            return


async def _pass(services: Services, owner: str, stop: asyncio.Event) -> None:
    db = services.db
    halt = threading.Event()  # the server stopping or the lease lost, for the pass's thread
    keeper = asyncio.create_task(_keep(services, owner, stop, halt), name="lifecycle-lease")
    completed = False
    try:
        started = time.time()
        report = await db.run(retention.run_once, db, services.blobs, services.settings,
                              stop=halt)
        completed = not halt.is_set()
        # one line per pass of the whole cluster (one instance runs it)
        log.info("lifecycle_pass", started=round(started, 3),
                 seconds=round(time.time() - started, 3), **report.as_dict())
    except Exception as exc:  # next interval tries again
        log.warning("lifecycle_pass_failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        halt.set()
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        try:
            await db.run(leases.finish, db, LEASE_NAME, owner, completed=completed)
        except Exception as exc:  # the lease runs out by itself
            log.warning("lifecycle_lease_release_failed", error=f"{type(exc).__name__}: {exc}")


async def lifecycle_worker(services: Services, stop: asyncio.Event) -> None:
    interval = float(services.settings.retention.interval)
    async for owner in leases.rounds(
            services.db, LEASE_NAME, stop, first=min(FIRST_DELAY, interval), every=interval,
            lease=float(services.settings.retention.lease), failed="lifecycle_pass_failed"):
        await _pass(services, owner, stop)
