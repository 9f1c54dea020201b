"""Retroactive linking (SPEC §5.7).

* ``relink_for_addresses(db, company_id=…, emails=…)``: a person gained addresses (or was
  created). Every stored message of the company with such a counterpart gets the
  person on its participant row, its thread gets the person link (``how = auto``) and
  rule §5.6 is re-applied to that thread. An address that is the thread owner's own, or
  that the thread owner has blocked, is left alone — the same choices ingest makes; so is
  an ``automated`` thread (SPEC §5.10: mail stored "unlinked" is never linked on its own).
* ``relink_for_item(db, item_id, also_persons=())``: a deal/lead/project was created or
  changed (status, person, visibility). Rule §5.6 is re-applied to every thread linked to
  its person (and to ``also_persons``, e.g. the person it belonged to before), so a new
  open item is linked where it is now the only candidate, becomes a suggestion where it is
  one of several, and a closed one drops out of the suggestions. Links already made are
  kept.
* ``relink_organizations(db, person_ids=…, organization_id=…)``: a person's organization
  was set or changed, or an organization's visibility or owner changed (SPEC §5.11): the
  automatic organization links of the threads of those persons (and of the threads
  linked to that organization) follow (``linking.organizations.sync``); manual ones stay.

Every pass also links the organizations of the persons it links, and each thread the rule
is re-applied to gets its ``link_state`` (SPEC §5.12) with its links.

All are idempotent (links are inserted under their unique constraint, the rule is a
function of the stored state), run in bounded batches of ``BATCH`` rows per transaction
(keyset pagination: no long transaction, no unbounded read) — each batch locks its
threads first, and is tried again after a deadlock (PostgreSQL) — and are called by the
command that made the change right after its own commit, so the links exist when the
command returns ("within seconds"). They return how many threads changed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import false, select, update
from sqlalchemy.orm import Session

from bccd.linking import blocklist, deals, organizations
from bccd.store.db import Database, transient
from bccd.store.models import (
    Alternate,
    Item,
    Link,
    Message,
    Participant,
    Person,
    PersonEmail,
    Suggestion,
    Thread,
    User,
)
from bccd.store.queries import insert_ignore

BATCH = 200
TRIES = 4
T = TypeVar("T")


class _Owners:
    """Per-user own addresses and block patterns, loaded once per run."""

    def __init__(self) -> None:
        self._own: dict[int, set[str]] = {}
        self._blocked: dict[int, list[str]] = {}

    def may_link(self, s: Session, user_id: int, email: str) -> bool:
        if user_id not in self._own:
            user = s.get(User, user_id)
            alts = s.scalars(select(Alternate.email).where(
                Alternate.user_id == user_id, Alternate.status == "confirmed"))
            self._own[user_id] = {*(alts), *([user.email] if user else [])}
            self._blocked[user_id] = blocklist.patterns(s, user_id)
        return email not in self._own[user_id] and not blocklist.is_blocked(
            self._blocked[user_id], email)


def relink_for_addresses(db: Database, *, company_id: int, emails: Sequence[str]) -> int:
    owners = _Owners()
    changed: set[int] = set()
    for email in emails:
        last_id: int | None = 0
        while last_id is not None:
            last_id = _batch(db, _address_batch, company_id, email, last_id, owners, changed)
    return len(changed)


def _address_batch(s: Session, company_id: int, email: str, last_id: int, owners: _Owners,
                   changed: set[int]) -> int | None:
    """One batch of ``relink_for_addresses``: the last participant row done, or None when
    there are no more."""
    person_id = s.scalar(select(PersonEmail.person_id).where(
        PersonEmail.company_id == company_id, PersonEmail.email == email))
    if person_id is None:
        return None
    rows = s.execute(
        select(Participant.id, Message.thread_id, Message.user_id)
        .join(Message, Message.id == Participant.message_id)
        .join(Thread, Thread.id == Message.thread_id)
        .where(Participant.company_id == company_id, Participant.email == email,
               Participant.id > last_id, Thread.automated == false())
        .order_by(Participant.id)
        .limit(BATCH)
    ).all()
    if not rows:
        return None
    ok = [r for r in rows if owners.may_link(s, r.user_id, email)]
    if not ok:
        return int(rows[-1].id)
    threads = sorted({r.thread_id for r in ok})
    deals.lock_threads(s, threads)  # before the person's row: the order filing takes them in
    s.execute(update(Participant).where(Participant.id.in_([r.id for r in ok]))
              .values(person_id=person_id))
    before = set(s.scalars(select(Link.thread_id).where(
        Link.kind == "person", Link.entity_id == person_id, Link.thread_id.in_(threads))))
    insert_ignore(s, Link, [{"thread_id": t, "kind": "person", "entity_id": person_id,
                             "how": "auto"} for t in threads])
    found = organizations.sync(s, threads)
    found.update(t for t in threads if _reapply(s, t) or t not in before)
    changed.update(found)  # after everything: a retried batch adds nothing twice
    return int(rows[-1].id)


def _batch(db: Database, fn: Callable[..., T], *args: Any) -> T:
    """``fn(session, *args)`` in a transaction of its own; a deadlock or serialization
    failure (PostgreSQL, other writers) is tried again, up to ``TRIES`` times."""
    for attempt in range(1, TRIES + 1):
        try:
            with db.transaction() as s:
                return fn(s, *args)
        except Exception as exc:
            if attempt == TRIES or not transient(exc):
                raise
        time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")


def relink_for_item(db: Database, item_id: int, also_persons: Sequence[int | None] = ()) -> int:
    with db.read() as s:
        item = s.get(Item, item_id)
        person_id = item.person_id if item is not None else None
    persons = sorted({p for p in (person_id, *also_persons) if p is not None})
    changed: set[int] = set()
    for pid in persons:
        for threads in _batches(db, Link.kind == "person", Link.entity_id == pid):
            changed.update(_batch(db, _reapply_all, threads))
    return len(changed)


def _reapply_all(s: Session, threads: Sequence[int]) -> set[int]:
    deals.lock_threads(s, threads)
    return {t for t in threads if _reapply(s, t)}


def relink_organizations(db: Database, *, person_ids: Sequence[int] = (),
                         organization_id: int | None = None) -> int:
    sources = [(Link.kind == "person", Link.entity_id == pid) for pid in sorted(set(person_ids))]
    if organization_id is not None:
        with db.read() as s:
            members = list(s.scalars(select(Person.id).where(
                Person.organization_id == organization_id).order_by(Person.id)))
        sources += [(Link.kind == "person", Link.entity_id == pid) for pid in members]
        sources.append((Link.kind == "organization", Link.entity_id == organization_id))
    changed: set[int] = set()
    for kind, entity in sources:
        for threads in _batches(db, kind, entity):
            changed.update(_batch(db, organizations.sync, threads))
    return len(changed)


def _batches(db: Database, *where: Any) -> Iterator[list[int]]:
    """The ids of the threads with a link matching ``where``, ``BATCH`` at a time."""
    last = 0
    while True:
        with db.read() as s:
            threads = list(s.scalars(select(Link.thread_id).where(*where, Link.thread_id > last)
                                     .order_by(Link.thread_id).limit(BATCH)))
        if not threads:
            return
        last = threads[-1]
        yield threads


def _state(s: Session, thread_id: int) -> tuple[frozenset[tuple[str, int, str]],
                                                 frozenset[tuple[str, int]]]:
    links = s.execute(select(Link.kind, Link.entity_id, Link.how).where(
        Link.thread_id == thread_id, Link.kind.in_(deals.ITEM_KINDS))).all()
    sugg = s.execute(select(Suggestion.kind, Suggestion.entity_id).where(
        Suggestion.thread_id == thread_id)).all()
    return (frozenset((k, e, h) for k, e, h in links), frozenset((k, e) for k, e in sugg))


def _reapply(s: Session, thread_id: int) -> bool:
    """Re-run rule §5.6 on one thread; True when its item link or suggestions changed."""
    thread = s.get(Thread, thread_id)
    if thread is None:
        return False
    owner = s.get(User, thread.owner_id)
    if owner is None:
        return False
    before = _state(s, thread_id)
    deals.apply(s, thread, owner, thread_locked=True)  # the batch locked its threads
    return _state(s, thread_id) != before
