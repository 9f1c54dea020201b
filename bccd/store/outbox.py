"""The durable outbox: work that must happen after a commit, even across restarts.

This module is the queue itself (the ``outbox`` table); ``bccd.notify.jobs`` runs it.

- ``enqueue(session, kind, payload)`` adds an ``OutboxJob`` in the *caller's* transaction,
  so the job exists exactly when the state change that asked for it was committed
  (``alt add`` commits the alternate and its confirmation mail together). ``payload`` is
  JSON; it must carry everything the handler needs. ``add`` is the same as one plain
  insert on the session's connection (no ORM object, no flush), returning the job's id —
  for hot paths (a webhook event per filed message).
- ``claim`` is safe for several ``bccd serve`` instances on one database: PostgreSQL uses
  ``SELECT … FOR UPDATE SKIP LOCKED``; SQLite a conditional ``UPDATE`` per job. A claim
  leases the job (``next_attempt_at = now + LEASE``) and bumps ``attempts``, which then
  fences the outcome (``complete``, ``fail``): a worker whose lease ran out cannot
  overwrite the newer claimant's result. A worker that dies mid-job leaves the lease to
  expire and the job is retried, so delivery is at least once.
- ``add_claimed`` inserts a job already claimed by its caller, who performs it at once and
  records the outcome in its own transaction (``complete_in``, ``retry_in``); if the caller
  dies first, the lease runs out and the worker performs it (a message sent while the
  client waits, retried by the outbox otherwise).
- ``fail`` retries with exponential back-off (``RETRY_BASE`` · 2ⁿ, ±20 % jitter, at most
  ``RETRY_MAX``) until the job is older than ``MAX_AGE``, then ``failed``;
  ``last_error`` keeps the one-line reason. ``purge_finished`` removes old finished jobs.

Every function is blocking; callers on the event loop use ``Database.run``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from bccd.store.db import Database
from bccd.store.models import OutboxJob, utcnow

LEASE = dt.timedelta(minutes=5)
RETRY_BASE = 2.0
RETRY_MAX = 15 * 60.0
MAX_AGE = dt.timedelta(days=3)
@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    attempts: int          # after this claim: the fencing token
    payload: dict[str, Any]
    created_at: dt.datetime


_INSERT_JOB = insert(OutboxJob).returning(OutboxJob.id)


def add(session: Session, kind: str, payload: dict[str, Any]) -> int:
    """``enqueue`` (due at once) as one insert on the session's connection: the job's id."""
    now = utcnow()
    return int(session.connection().execute(_INSERT_JOB, {
        "kind": kind, "payload": payload, "state": "pending", "attempts": 0, "last_error": "",
        "next_attempt_at": now, "created_at": now, "done_at": None}).scalar_one())


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    not_before: dt.datetime | None = None,
) -> OutboxJob:
    """Add a job in the caller's transaction; it is due at once (or at ``not_before``)."""
    job = OutboxJob(kind=kind, payload=payload, next_attempt_at=not_before or utcnow())
    session.add(job)
    session.flush()
    return job


def add_claimed(session: Session, kind: str, payload: dict[str, Any], *,
                lease: dt.timedelta = LEASE) -> Job:
    """A job its caller performs now (module docstring): attempt 1, leased to the caller."""
    now = utcnow()
    job_id = int(session.connection().execute(_INSERT_JOB, {
        "kind": kind, "payload": payload, "state": "pending", "attempts": 1, "last_error": "",
        "next_attempt_at": now + lease, "created_at": now, "done_at": None}).scalar_one())
    return Job(job_id, kind, 1, payload, now)


def complete_in(session: Session, job: Job) -> bool:
    """``complete`` inside the caller's transaction (with the work it records)."""
    res = session.execute(_fenced(job).values(state="done", done_at=utcnow(), last_error=""))
    return getattr(res, "rowcount", 0) == 1


def retry_in(session: Session, job: Job, error: str, *, seconds: float | None = None) -> bool:
    """Let the worker try the job again, after ``seconds`` (default: the back-off), inside
    the caller's transaction."""
    delay = backoff(job.attempts) if seconds is None else seconds
    res = session.execute(_fenced(job).values(
        last_error=error[:1000], next_attempt_at=utcnow() + dt.timedelta(seconds=delay)))
    return getattr(res, "rowcount", 0) == 1


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed tries (2 s, 4 s, 8 s …)."""
    delay: float = min(RETRY_BASE * 2.0 ** max(attempts - 1, 0), RETRY_MAX)
    return delay * random.uniform(0.8, 1.2)


# ------------------------------------------------------------------ blocking storage
def claim(
    db: Database,
    kinds: Iterable[str],
    *,
    limit: int = 10,
    now: dt.datetime | None = None,
    lease: dt.timedelta = LEASE,
) -> list[Job]:
    """Lease up to ``limit`` due jobs of ``kinds``; nobody else gets them until the lease ends."""
    kinds = sorted(set(kinds))
    if not kinds or limit <= 0:
        return []
    now = now or utcnow()
    due = (
        select(OutboxJob.id, OutboxJob.kind, OutboxJob.attempts, OutboxJob.payload,
               OutboxJob.created_at)
        .where(OutboxJob.state == "pending", OutboxJob.next_attempt_at <= now,
               OutboxJob.kind.in_(kinds))
        .order_by(OutboxJob.next_attempt_at, OutboxJob.id)
        .limit(limit)
    )
    claimed: list[Job] = []
    with db.transaction() as s:
        if db.is_sqlite:
            # BEGIN IMMEDIATE already serialises writers; the conditional UPDATE keeps the
            # claim correct whatever the isolation (another process may hold an old read)
            for row in s.execute(due).all():
                res = s.execute(
                    update(OutboxJob)
                    .where(OutboxJob.id == row.id, OutboxJob.state == "pending",
                           OutboxJob.attempts == row.attempts)
                    .values(next_attempt_at=now + lease, attempts=OutboxJob.attempts + 1)
                )
                if getattr(res, "rowcount", 0) == 1:
                    claimed.append(Job(row.id, row.kind, row.attempts + 1, dict(row.payload),
                                       row.created_at))
            return claimed
        rows = s.execute(due.with_for_update(skip_locked=True)).all()
        if rows:
            s.execute(
                update(OutboxJob)
                .where(OutboxJob.id.in_([r.id for r in rows]))
                .values(next_attempt_at=now + lease, attempts=OutboxJob.attempts + 1)
            )
        return [Job(r.id, r.kind, r.attempts + 1, dict(r.payload), r.created_at) for r in rows]


def _fenced(job: Job) -> Any:
    return update(OutboxJob).where(
        OutboxJob.id == job.id, OutboxJob.state == "pending", OutboxJob.attempts == job.attempts
    )


def complete(db: Database, job: Job, *, now: dt.datetime | None = None) -> bool:
    """Mark done; False when the lease was lost to another claimant meanwhile."""
    with db.transaction() as s:
        res = s.execute(_fenced(job).values(state="done", done_at=now or utcnow(), last_error=""))
        return getattr(res, "rowcount", 0) == 1


def fail(
    db: Database,
    job: Job,
    error: str,
    *,
    permanent: bool = False,
    now: dt.datetime | None = None,
    max_age: dt.timedelta = MAX_AGE,
) -> str:
    """Record a failed try; returns the job's state now (``pending`` to retry, ``failed``)."""
    now = now or utcnow()
    give_up = permanent or now - job.created_at >= max_age
    values: dict[str, Any] = {"last_error": error[:1000]}
    if give_up:
        values.update(state="failed", done_at=now)
    else:
        values["next_attempt_at"] = now + dt.timedelta(seconds=backoff(job.attempts))
    with db.transaction() as s:
        res = s.execute(_fenced(job).values(**values))
        if getattr(res, "rowcount", 0) != 1:
            return "lost"
    return "failed" if give_up else "pending"


def purge_finished(db: Database, older_than: dt.timedelta, *, now: dt.datetime | None = None) -> int:
    """Delete done and failed jobs finished more than ``older_than`` ago; returns how many."""
    cutoff = (now or utcnow()) - older_than
    with db.transaction() as s:
        res = s.execute(
            delete(OutboxJob).where(OutboxJob.state.in_(("done", "failed")),
                                    OutboxJob.done_at < cutoff)
        )
        return int(getattr(res, "rowcount", 0) or 0)
