"""Threading (SPEC §5.4): Message-ID / In-Reply-To / References (and Gmail's thread id
when syncing Gmail) map to a thread through ``thread_refs``, unique per user.

``resolve(session, user_id=…, company_id=…, message_id=…, refs=…, gm_thrid=…, subject=…,
visibility=…)`` → ``(thread, created)``: the thread the new message belongs to (a new one,
with the owner's ``sharing_default`` as ``visibility``, when none of its ids is known);
every id it carries or references is registered for that thread.

* A reply that arrives before its parent registers the parent's id, so the parent
  joins the reply's thread when it comes ("reattach"); a parent that connects two
  chains that were threaded apart merges them (``merge``).
* There is no subject-only merging: a message without known ids starts a new thread.
* Concurrent creators converge: references are inserted under the (user, ref) unique
  constraint (in a fixed order, so two writers never deadlock on them), and a writer
  that finds another thread owning one of its ids moves over to the oldest thread.

Merging keeps the oldest thread; its item link is reconciled (``deals.reconcile``) so a
thread still has at most one deal/lead/project link; a merge of a private and a shared
thread is private (the stricter choice never shows a message to someone who could not
see it before).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bccd.linking import deals
from bccd.store.models import Link, Message, Suggestion, Thread, ThreadRef, utcnow
from bccd.store.queries import insert_ignore

MAX_REF_LEN = 998


def all_refs(message_id: str | None, refs: Sequence[str], gm_thrid: str | None) -> list[str]:
    out: list[str] = []
    if gm_thrid:
        out.append(f"gm:{gm_thrid}")
    if message_id:
        out.append(message_id)
    for r in refs:
        if r not in out:
            out.append(r)
    return list(dict.fromkeys(r[:MAX_REF_LEN] for r in out))


def find(session: Session, user_id: int, refs: Sequence[str]) -> list[int]:
    """Threads of ``user_id`` owning any of ``refs``, oldest first."""
    if not refs:
        return []
    rows = session.scalars(
        select(ThreadRef.thread_id).where(ThreadRef.user_id == user_id,
                                          ThreadRef.ref.in_(list(refs)))
    ).all()
    return sorted(set(rows))


def merge(session: Session, keep: Thread, others: Sequence[int]) -> None:
    """Fold the threads ``others`` into ``keep``."""
    for other_id in others:
        if other_id == keep.id:
            continue
        other = session.get(Thread, other_id)
        if other is None:
            continue
        session.execute(update(Message).where(Message.thread_id == other_id)
                        .values(thread_id=keep.id))
        session.execute(update(ThreadRef).where(ThreadRef.thread_id == other_id)
                        .values(thread_id=keep.id))
        deals.reconcile(session, keep.id, other_id)
        for link in session.scalars(select(Link).where(Link.thread_id == other_id)).all():
            insert_ignore(session, Link, [{"thread_id": keep.id, "kind": link.kind,
                                           "entity_id": link.entity_id, "how": link.how}])
            if link.how == "manual":  # a manual link stays manual whichever side held it
                session.execute(update(Link).where(
                    Link.thread_id == keep.id, Link.kind == link.kind,
                    Link.entity_id == link.entity_id).values(how="manual"))
        session.execute(delete(Suggestion).where(Suggestion.thread_id.in_([keep.id, other_id])))
        keep.manual_items = keep.manual_items or other.manual_items
        keep.archived = keep.archived and other.archived
        if other.visibility == "private":
            keep.visibility = "private"
        if other.last_message_at > keep.last_message_at:
            keep.last_message_at = other.last_message_at
        session.execute(delete(Link).where(Link.thread_id == other_id))
        session.execute(delete(Thread).where(Thread.id == other_id))
    session.flush()


def resolve(
    session: Session,
    *,
    user_id: int,
    company_id: int,
    message_id: str | None,
    refs: Sequence[str],
    gm_thrid: str | None,
    subject: str,
    visibility: str,
) -> tuple[Thread, bool]:
    ids = all_refs(message_id, refs, gm_thrid)
    found = find(session, user_id, ids)
    created = False
    if found:
        thread = session.get(Thread, found[0])
        assert thread is not None
        merge(session, thread, found[1:])
        if not refs and message_id and thread.subject != subject:
            thread.subject = subject[:2000]  # the root arrived after its replies
    else:
        thread = Thread(company_id=company_id, owner_id=user_id, subject=subject[:2000],
                        visibility=visibility)
        session.add(thread)
        session.flush()
        created = True
    insert_ignore(session, ThreadRef, [{"user_id": user_id, "ref": r, "thread_id": thread.id}
                                       for r in sorted(ids)])
    # a concurrent writer may own some of the ids now: converge on the oldest thread
    winners = find(session, user_id, ids)
    if winners and winners != [thread.id]:
        target = session.get(Thread, winners[0])
        assert target is not None
        merge(session, target, [w for w in [*winners, thread.id] if w != target.id])
        created = created and target.id == thread.id
        thread = target
    thread.last_message_at = utcnow()
    return thread, created
