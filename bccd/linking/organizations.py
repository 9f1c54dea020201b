"""Organizations (SPEC §5.11): a thread linked to a person who has an organization is also
linked to that organization (``how = auto``).

The automatic organization links of a thread are exactly the organizations of the persons
linked to it — those the thread's owner may see: automatic linking never attaches an
organization that only someone else may see (the same choice as for deal, lead and project
candidates, ``linking.deals``), so it neither names it on the owner's mail nor hides a
shared thread from colleagues because of it. A manual organization link is the user's and
stays, whatever the persons do. An automatic one that was removed by hand comes back when
its basis is linked again (as a person unlinked by hand does, ``linking.manual``).

- ``link_rows(thread_id, org_ids)`` → the link rows filing inserts with the person links
  (the organizations come from filing's one read, ``engine.Known``);
- ``sync(session, thread_ids)`` brings the automatic organization links of those threads
  in line with their persons — after a person was linked or unlinked, deleted or erased,
  a person's organization changed, or an organization's visibility or owner changed —
  and returns the threads whose links changed. Bounded: ``BATCH`` threads per statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from bccd.store.models import Link, Organization, Person, Thread, User
from bccd.store.queries import insert_ignore

BATCH = 500


def link_rows(thread_id: int, org_ids: Iterable[int | None]) -> list[dict[str, Any]]:
    return [{"thread_id": thread_id, "kind": "organization", "entity_id": oid, "how": "auto"}
            for oid in sorted({o for o in org_ids if o is not None})]


def _wanted(thread_ids: Sequence[int]) -> Any:
    """(thread, organization) pairs the persons of these threads call for."""
    return (select(Link.thread_id, Person.organization_id).distinct()
            .join(Person, and_(Link.kind == "person", Person.id == Link.entity_id))
            .join(Thread, Thread.id == Link.thread_id)
            .join(User, User.id == Thread.owner_id)
            .join(Organization, Organization.id == Person.organization_id)
            .where(Link.thread_id.in_(thread_ids),
                   or_(User.is_admin, Organization.visible_to == "company",
                       Organization.owner_id == Thread.owner_id)))


def sync(session: Session, thread_ids: Iterable[int]) -> set[int]:
    """Make the automatic organization links of these threads follow their persons."""
    ids = sorted(set(thread_ids))
    changed: set[int] = set()
    session.flush()
    for i in range(0, len(ids), BATCH):
        chunk = ids[i:i + BATCH]
        wanted = {(int(t), int(o)) for t, o in session.execute(_wanted(chunk))}
        have = {(int(t), int(o)): (int(lid), how) for lid, t, o, how in session.execute(
            select(Link.id, Link.thread_id, Link.entity_id, Link.how)
            .where(Link.thread_id.in_(chunk), Link.kind == "organization"))}
        add = sorted(wanted - set(have))
        gone = [(key, lid) for key, (lid, how) in have.items()
                if how == "auto" and key not in wanted]
        if add:
            insert_ignore(session, Link, [{"thread_id": t, "kind": "organization",
                                           "entity_id": o, "how": "auto"} for t, o in add])
        if gone:
            session.execute(delete(Link).where(Link.id.in_([lid for _, lid in gone])))
        changed.update(t for t, _ in add)
        changed.update(t for (t, _), _ in gone)
    return changed
