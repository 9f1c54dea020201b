"""Leases of the periodic passes: with several ``bccd serve`` instances on one database,
each pass (retention and blob collection, the outbox cleanup) runs once per interval, by
one instance at a time.

``claim(db, name, owner, every=…, lease=…)`` → True when ``owner`` may run the pass now: no
other instance holds a live lease on it, and it last *completed* at least ``every``
seconds ago. It is one conditional UPDATE on the pass's ``periodic_passes`` row, so of
several instances claiming at once exactly one wins. The holder renews the lease while it
works (``renew``, False once it was lost) and ``finish`` records the completion and frees
it. An instance that dies mid-pass records no completion: when its lease runs out, the
next instance to wake up runs the pass again — every pass is made of steps that are each
one transaction and idempotent, so nothing is left half done.

Times are the instances' clocks (keep them in NTP); the interval check leaves a tenth of
``every`` of slack (``SLACK``) so that small differences do not skip a round.

``rounds(db, name, stop, first=…, every=…, lease=…, failed=…)`` is the loop both periodic
workers run around it: wait (``first``, then ``every`` seconds, returning as soon as
``stop`` is set), claim, and yield this instance's owner id for each round it won; a
claim that fails is logged as ``failed`` and the next round tries again. The caller runs
the pass and calls ``finish``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import socket
from collections.abc import AsyncIterator

from sqlalchemy import or_, update

from bccd.log import get_logger
from bccd.store.db import Database
from bccd.store.models import utcnow
from bccd.store.models_storage import PeriodicPass
from bccd.store.queries import insert_ignore

SLACK = 0.1

log = get_logger("bccd.store.leases")


def instance_id() -> str:
    """Who holds a lease: host, process and a random part (a restarted process differs)."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(4)}"


def claim(db: Database, name: str, owner: str, *, every: float, lease: float,
          now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    due = now - dt.timedelta(seconds=every * (1 - SLACK))
    with db.transaction() as s:
        insert_ignore(s, PeriodicPass, [{"name": name}])
        res = s.execute(
            update(PeriodicPass)
            .where(PeriodicPass.name == name,
                   or_(PeriodicPass.lease_until.is_(None), PeriodicPass.lease_until < now,
                       PeriodicPass.owner == owner),
                   or_(PeriodicPass.done_at.is_(None), PeriodicPass.done_at <= due))
            .values(owner=owner, lease_until=now + dt.timedelta(seconds=lease)))
        return getattr(res, "rowcount", 0) == 1


def renew(db: Database, name: str, owner: str, *, lease: float) -> bool:
    """Extend the lease; False when another instance has taken the pass over."""
    now = utcnow()
    with db.transaction() as s:
        res = s.execute(update(PeriodicPass)
                        .where(PeriodicPass.name == name, PeriodicPass.owner == owner)
                        .values(lease_until=now + dt.timedelta(seconds=lease)))
        return getattr(res, "rowcount", 0) == 1


def finish(db: Database, name: str, owner: str, *, completed: bool = True) -> None:
    """Free the lease; ``completed`` records the pass as done now (not for a pass cut
    short by a stop: the next instance to wake up runs it)."""
    values: dict[str, object] = {"owner": None, "lease_until": None}
    if completed:
        values["done_at"] = utcnow()
    with db.transaction() as s:
        s.execute(update(PeriodicPass)
                  .where(PeriodicPass.name == name, PeriodicPass.owner == owner)
                  .values(**values))


async def rounds(db: Database, name: str, stop: asyncio.Event, *, first: float, every: float,
                 lease: float, failed: str) -> AsyncIterator[str]:
    """The rounds of pass ``name`` this instance won (module docstring): yields its owner
    id, once per won round; returns when ``stop`` is set."""
    owner = instance_id()
    delay = first
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return
        delay = every
        try:
            mine = await db.run(claim, db, name, owner, every=every, lease=lease)
        except Exception as exc:  # the next round tries again
            log.warning(failed, error=f"{type(exc).__name__}: {exc}")
            continue
        if mine:
            yield owner
