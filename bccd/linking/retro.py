"""Retroactive linking (SPEC §5.7).

* ``relink_for_addresses(db, company_id=…, emails=…)``: a person gained addresses (or was
  created). Every stored message of the company with such a counterpart gets the
  person on its participant row, its thread gets the person link (``how = auto``) and
  rule §5.6 is re-applied to that thread. An address that is the thread owner's own, or
  that the thread owner has blocked, is left alone — the same choices ingest makes.
* ``relink_for_item(db, item_id)``: a deal/lead/project was created or changed status.
  Rule §5.6 is re-applied to every thread linked to its person, so a new open item is
  linked where it is now the only candidate, becomes a suggestion where it is one of
  several, and a closed one drops out of the suggestions. Links already made are kept.

Both are idempotent (links are inserted under their unique constraint, the rule is a
function of the stored state), run in bounded batches of ``BATCH`` rows per transaction
(keyset pagination: no long transaction, no unbounded read), and are called by the
command that made the change right after its own commit, so the links exist when the
command returns ("within seconds"). They return how many threads changed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bccd.linking import blocklist, deals
from bccd.store.db import Database
from bccd.store.models import (
    Alternate,
    Item,
    Link,
    Message,
    Participant,
    PersonEmail,
    Suggestion,
    Thread,
    User,
)
from bccd.store.queries import insert_ignore

BATCH = 200


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
        last_id = 0
        while True:
            with db.transaction() as s:
                person_id = s.scalar(select(PersonEmail.person_id).where(
                    PersonEmail.company_id == company_id, PersonEmail.email == email))
                if person_id is None:
                    break
                rows = s.execute(
                    select(Participant.id, Message.thread_id, Message.user_id)
                    .join(Message, Message.id == Participant.message_id)
                    .where(Participant.company_id == company_id, Participant.email == email,
                           Participant.id > last_id)
                    .order_by(Participant.id)
                    .limit(BATCH)
                ).all()
                if not rows:
                    break
                last_id = rows[-1].id
                ok = [r for r in rows if owners.may_link(s, r.user_id, email)]
                if not ok:
                    continue
                s.execute(update(Participant).where(Participant.id.in_([r.id for r in ok]))
                          .values(person_id=person_id))
                threads = sorted({r.thread_id for r in ok})
                before = set(s.scalars(select(Link.thread_id).where(
                    Link.kind == "person", Link.entity_id == person_id,
                    Link.thread_id.in_(threads))))
                insert_ignore(s, Link, [{"thread_id": t, "kind": "person", "entity_id": person_id,
                                         "how": "auto"} for t in threads])
                for t in threads:
                    if _reapply(s, t) or t not in before:
                        changed.add(t)
    return len(changed)


def relink_for_item(db: Database, item_id: int) -> int:
    with db.read() as s:
        item = s.get(Item, item_id)
        person_id = item.person_id if item is not None else None
    if person_id is None:
        return 0
    changed = 0
    last = 0
    while True:
        with db.transaction() as s:
            threads = list(s.scalars(
                select(Link.thread_id)
                .where(Link.kind == "person", Link.entity_id == person_id, Link.thread_id > last)
                .order_by(Link.thread_id)
                .limit(BATCH)
            ))
            if not threads:
                break
            last = threads[-1]
            changed += sum(1 for t in threads if _reapply(s, t))
    return changed


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
    deals.apply(s, thread, owner)
    return _state(s, thread_id) != before
