"""Runs the durable outbox (``bccd.store.outbox``): claims due jobs and performs them.

- A handler is ``async def handler(payload) -> None``, looked up by ``kind`` in the
  table given to :func:`run` / :func:`process_due` (``bccd serve`` builds it, binding
  each handler to what it needs). Returning means done. Raising
  :class:`PermanentFailure` marks the job ``failed`` at once (retrying cannot help); any
  other exception retries with back-off (``store.outbox.fail``).
- Only the kinds in the handler table are claimed: jobs of other kinds (IMAP write-back
  has its own loop) are left alone.

All database work is blocking and runs through ``Database.run``; the loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bccd.log import get_logger
from bccd.store.db import Database
from bccd.store.outbox import LEASE, Job, claim, complete, fail

log = get_logger("bccd.outbox")

HANDLER_TIMEOUT = LEASE.total_seconds() / 2  # a job finishes (or fails) well within its lease
POLL_INTERVAL = 1.0
CONCURRENCY = 8

JobHandler = Callable[[dict[str, Any]], Awaitable[None]]


class PermanentFailure(Exception):
    """Retrying this job cannot help (the relay refused the recipient, bad payload …)."""


async def perform(db: Database, handlers: Mapping[str, JobHandler], job: Job) -> str:
    """Run one claimed job and record its outcome: ``done``, ``pending`` (will be retried),
    ``failed``, or ``lost`` (the lease went to another claimant, or the outcome could not be
    recorded — the lease then runs out and the job is retried)."""
    try:
        return await _perform(db, handlers, job)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the database may be briefly away
        log.warning("outbox_outcome_not_recorded", job=job.id, kind=job.kind,
                    error=f"{type(exc).__name__}: {exc}")
        return "lost"


async def _perform(db: Database, handlers: Mapping[str, JobHandler], job: Job) -> str:
    handler = handlers.get(job.kind)
    try:
        if handler is None:
            raise PermanentFailure(f"no handler for outbox kind {job.kind!r}")
        await asyncio.wait_for(handler(job.payload), HANDLER_TIMEOUT)
    except asyncio.CancelledError:
        raise  # stopping: the lease runs out and the job is retried
    except Exception as exc:  # every failure is recorded on the job
        permanent = isinstance(exc, PermanentFailure)
        reason = str(exc) if permanent else f"{type(exc).__name__}: {exc}"
        state = await db.run(fail, db, job, reason.splitlines()[0] if reason else "", permanent=permanent)
        log.warning("outbox_job_failed", job=job.id, kind=job.kind, attempt=job.attempts,
                    state=state, reason=reason)
        return state
    if await db.run(complete, db, job):
        log.info("outbox_job_done", job=job.id, kind=job.kind, attempt=job.attempts)
        return "done"
    log.warning("outbox_lease_lost", job=job.id, kind=job.kind, attempt=job.attempts)
    return "lost"


async def process_due(
    db: Database, handlers: Mapping[str, JobHandler], *, limit: int = CONCURRENCY
) -> int:
    """Claim and run the due jobs once, concurrently; returns how many were run."""
    jobs = await db.run(claim, db, handlers.keys(), limit=limit)
    if jobs:
        await asyncio.gather(*(perform(db, handlers, j) for j in jobs))
    return len(jobs)


async def run(
    db: Database,
    handlers: Mapping[str, JobHandler],
    stop: asyncio.Event,
    *,
    poll: float = POLL_INTERVAL,
    concurrency: int = CONCURRENCY,
    drain: float = 5.0,
) -> None:
    """Claim and perform jobs until ``stop`` is set.

    Due jobs are polled every ``poll`` seconds (another process — ``bccd alt add`` — may
    have enqueued them); up to ``concurrency`` run at once, so one slow relay does not
    hold up the rest. On stop, running jobs get ``drain`` seconds, then are cancelled.
    """
    running: set[asyncio.Task[str]] = set()
    while not stop.is_set():
        free = concurrency - len(running)
        jobs: list[Job] = []
        if free > 0:
            try:
                jobs = await db.run(claim, db, handlers.keys(), limit=free)
            except Exception as exc:  # the database may be briefly away
                log.warning("outbox_claim_failed", error=f"{type(exc).__name__}: {exc}")
        for job in jobs:
            task = asyncio.create_task(perform(db, handlers, job), name=f"outbox-{job.id}")
            running.add(task)
            task.add_done_callback(running.discard)
        if jobs and len(running) < concurrency:
            continue  # more may be due right away
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait()), *running}
        await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            if w not in running and not w.done():
                w.cancel()
    if running:
        _, pending = await asyncio.wait(running, timeout=drain)
        for t in pending:
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending, return_exceptions=True)
