"""Threading (SPEC §5.4): Message-ID / In-Reply-To / References (and Gmail's thread id
when syncing Gmail) map to a thread through ``thread_refs``, unique per user.

``resolve(session, user_id=…, company_id=…, message_id=…, refs=…, gm_thrid=…, subject=…,
visibility=…, owners=None)`` → ``(thread, created)``: the thread the new message belongs to
(a new one, with the owner's ``sharing_default`` as ``visibility``, when none of its ids is
known); every id it carries or references is registered for that thread. ``owners``: the
threads owning the ids (``all_refs``), when the caller has already read them.

* A reply that arrives before its parent registers the parent's id, so the parent
  joins the reply's thread when it comes ("reattach"); a parent that connects two
  chains that were threaded apart merges them (``merge``).
* There is no subject-only merging: a message without known ids starts a new thread.
* Concurrent creators converge: references are inserted under the (user, ref) unique
  constraint (in a fixed order, so two writers never deadlock on them), and a writer
  that finds another thread owning one of its ids moves over to the oldest thread.
  On PostgreSQL (READ COMMITTED) a thread read a moment ago may have been merged away
  by another instance since: the ids are read again and the message joins the survivor
  (``ThreadRace``, a temporary failure, only if that keeps happening ``ATTEMPTS`` times).

Cost: a message that starts a thread is three statements (find — none when the caller
passes ``owners`` —, insert the thread, insert its refs); one that joins a thread updates
it with one more (``UPDATE … RETURNING``, unless that thread is loaded in the session or
threads merge: then through the ORM). The convergence check runs only when an id could not
be registered (another thread owns it). The statements are built once and executed on the
session's connection (the hot path of every copy filed).

Merging keeps the oldest thread; its item link is reconciled (``deals.reconcile``) so a
thread still has at most one deal/lead/project link, and its ``link_state`` recomputed; a
merge of a private and a shared thread is private (the stricter choice never shows a
message to someone who could not see it before).

Categories (SPEC §5.10, ``linking.categories``): a new thread takes its first message's
``category`` and ``automated`` (the message was filed "unlinked": the thread starts
``automated``); a message that joins makes the thread's category the more human of the
two and keeps ``automated`` only if it was filed unlinked too — in the same statement that
touches the thread. A merge does the same with the two threads' values, and takes the
meetings of the merged thread along.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Boolean, Integer, and_, bindparam, case, delete, insert, select, update
from sqlalchemy.orm import Session

from bccd.linking import deals, linkstate
from bccd.linking.categories import ORDER, PERSON, RANK, thread_category
from bccd.store import direct
from bccd.store.models import Link, Meeting, Message, Suggestion, Thread, ThreadRef, utcnow
from bccd.store.queries import FixedIn, insert_ignore, insert_ignore_many_returning

MAX_REF_LEN = 998


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """A thread as filing knows it without loading it: one this copy created (``created``:
    nothing else can have linked it yet), or one it joined (``manual_items`` as read)."""

    id: int
    manual_items: bool = False


_R = ThreadRef.__table__
_FIND = FixedIn(_R.c.ref, "r", lambda in_: select(_R.c.thread_id, _R.c.ref)
                .where(_R.c.user_id == bindparam("u"), in_))
_NEW_THREAD = insert(Thread).returning(Thread.id)
_RANK_OF_THREAD = case({c: i for i, c in enumerate(ORDER)}, value=Thread.category, else_=0)
_TOUCH = (update(Thread).where(Thread.id == bindparam("t"))
          .values(last_message_at=bindparam("now"),
                  automated=and_(Thread.automated, bindparam("auto", type_=Boolean())),
                  category=case((bindparam("rank", type_=Integer()) < _RANK_OF_THREAD,
                                 bindparam("cat")), else_=Thread.category))
          .returning(Thread.manual_items))
_TOUCH_SUBJECT = _TOUCH.values(subject=bindparam("subject"))


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
    return sorted(set(_owners(session, user_id, refs).values()))


def _owners(session: Session, user_id: int, refs: Sequence[str]) -> dict[str, int]:
    if not refs:
        return {}
    stmt, params = _FIND(refs)
    rows = direct.execute(session.connection(), stmt, {"u": user_id, **params})
    return {ref: tid for tid, ref in rows}


@dataclass(frozen=True, slots=True)
class Kind:
    """What the joining message says about its thread (SPEC §5.10): its category, and
    whether it was filed "unlinked" (``automated``)."""

    category: str = PERSON
    automated: bool = False

    def onto(self, thread: Thread) -> None:
        """Apply to a thread loaded in the session."""
        thread.category = thread_category(thread.category, self.category)
        thread.automated = bool(thread.automated and self.automated)


def _touch(session: Session, thread_id: int, subject: str | None,
           now: dt.datetime, kind: Kind) -> ThreadRow | None:
    """The message joins the thread: its last message time, category (and the root's
    subject) in one statement — unless the session holds the thread (the ORM object would
    go stale)."""
    if session.identity_key(Thread, thread_id) in session.identity_map:
        return None
    conn = session.connection()
    params = {"t": thread_id, "now": now, "auto": kind.automated,
              "rank": RANK.get(kind.category, 0), "cat": kind.category}
    if subject is None:
        row = direct.execute(conn, _TOUCH, params).first()
    else:
        row = direct.execute(conn, _TOUCH_SUBJECT, {**params, "subject": subject[:2000]}).first()
    return None if row is None else ThreadRow(thread_id, bool(row.manual_items))


def merge(session: Session, keep: Thread, others: Sequence[int]) -> bool:
    """Fold the threads ``others`` into ``keep``. False when one of them was gone — merged
    into some thread by a concurrent writer (PostgreSQL) — so its ids may now name a
    thread that was not folded in (``resolve`` then converges)."""
    # lock them first (PostgreSQL; in id order, so two merges never deadlock on them): a
    # copy joining one of them right now holds its row (``_touch``) or a key-share lock
    # (the messages foreign key), so this waits for that copy to commit and then moves
    # its message too — deleting the thread must never take a message with it. A copy
    # that comes later finds the thread gone (``_touch``: no row; an insert: a foreign
    # key error, retried) and joins ``keep``.
    wanted = sorted({o for o in others if o != keep.id})
    locked = {t.id: t for t in session.scalars(
        select(Thread).where(Thread.id.in_(wanted)).order_by(Thread.id).with_for_update()
        .execution_options(populate_existing=True))} if wanted else {}
    complete = True
    for other_id in wanted:
        other = locked.get(other_id)
        if other is None:
            complete = False
            continue
        session.execute(update(Message).where(Message.thread_id == other_id)
                        .values(thread_id=keep.id))
        session.execute(update(ThreadRef).where(ThreadRef.thread_id == other_id)
                        .values(thread_id=keep.id))
        session.execute(update(Meeting).where(Meeting.thread_id == other_id)
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
        Kind(other.category, other.automated).onto(keep)
        if other.visibility == "private":
            keep.visibility = "private"
        if other.last_message_at > keep.last_message_at:
            keep.last_message_at = other.last_message_at
        session.execute(delete(Link).where(Link.thread_id == other_id))
        session.execute(delete(Thread).where(Thread.id == other_id))
    session.flush()
    linkstate.refresh(session, [keep.id])  # its links and suggestions changed
    return complete


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
    owners: Mapping[str, int] | None = None,
    kind: Kind = Kind(),
) -> tuple[Thread | ThreadRow, bool]:
    """``kind``: the message's category and whether it is filed unlinked."""
    ids = all_refs(message_id, refs, gm_thrid)
    if owners is None:
        owners = _owners(session, user_id, ids)
    created = False
    now = utcnow()
    root = not refs and bool(message_id)  # the root arrived after its replies: its subject
    thread: Thread | ThreadRow | None = None
    complete = True
    for _ in range(ATTEMPTS):
        found = sorted(set(owners.values()))
        if not found:
            tid = direct.execute(session.connection(), _NEW_THREAD, {
                "company_id": company_id, "owner_id": user_id, "subject": subject[:2000],
                "visibility": visibility, "archived": False, "manual_items": False,
                "gm_thrid": None, "created_at": now, "last_message_at": now,
                "category": kind.category, "automated": kind.automated,
                "link_state": linkstate.AUTOMATED if kind.automated else linkstate.INITIAL,
            }).scalar_one()
            thread, created = ThreadRow(tid), True
            break
        thread, complete = _join(session, found, subject if root else None, now, kind)
        if thread is not None:
            break
        # PostgreSQL: a concurrent writer merged that thread away after ``owners`` was
        # read (and committed: its ids name the surviving thread now)
        owners = _owners(session, user_id, ids)
    if thread is None:
        raise ThreadRace(f"the threads of {message_id!r} kept being merged away")
    new = [r for r in sorted(ids) if r not in owners]
    registered = insert_ignore_many_returning(
        session, ThreadRef, [{"user_id": user_id, "ref": r, "thread_id": thread.id} for r in new],
        "ref")
    if complete and len(registered) == len(new):
        return thread, created  # every id is this thread's: nobody else got in between
    target = _converge(session, user_id, ids, thread, now, kind)
    return target, created and target.id == thread.id


class ThreadRace(RuntimeError):
    """Concurrent merges outran ``resolve`` ``ATTEMPTS`` times (a temporary failure)."""


ATTEMPTS = 5


def _join(session: Session, found: Sequence[int], subject: str | None,
          now: dt.datetime, kind: Kind) -> tuple[Thread | ThreadRow | None, bool]:
    """The message joins ``found[0]``, the oldest of the threads owning its ids, and the
    others are merged into it; ``(None, _)`` when ``found[0]`` is gone. The flag is
    ``merge``'s."""
    if len(found) == 1:
        touched = _touch(session, found[0], subject, now, kind)
        if touched is not None:
            return touched, True
    old = session.get(Thread, found[0])
    if old is None:
        return None, True
    complete = merge(session, old, found[1:])
    if subject is not None and old.subject != subject:
        old.subject = subject[:2000]
    old.last_message_at = now
    kind.onto(old)
    return old, complete


def _converge(session: Session, user_id: int, ids: Sequence[str],
              thread: Thread | ThreadRow, now: dt.datetime, kind: Kind) -> Thread | ThreadRow:
    """A concurrent writer owns some of ``ids`` (or merged a thread away under us):
    fold every thread owning one of them, and ``thread``, into the oldest, until one
    thread owns them all."""
    for _ in range(ATTEMPTS):
        winners = find(session, user_id, ids)
        if not winners or winners == [thread.id]:
            return thread
        target = session.get(Thread, winners[0])
        if target is None:  # merged away since ``find``: look again
            continue
        complete = merge(session, target, [w for w in [*winners, thread.id] if w != target.id])
        target.last_message_at = now
        kind.onto(target)
        thread = target
        if complete:
            return target
    raise ThreadRace(f"the threads of {ids[0]!r} kept being merged away")
