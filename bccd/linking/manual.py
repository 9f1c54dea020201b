"""What a user does to a thread by hand (SPEC §8 ``mail link|unlink|set|archive|delete``).

Every function takes an open session, the thread, and the acting user (``None`` for the
operator, who is bound by nothing but company boundaries) and raises ``bccd.errors``
types a person can read:

* ``link``: the thread must be visible to the actor and the entity visible to the actor
  and of the thread's company. A manual link is ``how = manual``; a deal/lead/project
  linked by hand replaces any other item link (a thread has at most one) and marks the
  thread ``manual_items`` so the automatic rule leaves it alone afterwards. Linking a
  person re-applies rule §5.6 (the person's single open item may now apply). A link the
  thread did not have is a ``thread.linked`` event (``store.events``; item links emit it
  in ``linking.deals``), whoever made it — the CLI or the web.
* ``unlink``: removes one link. A link to an entity that is not visible to the whole
  company (``visibility.link_narrows``) keeps the shared thread from everyone who may not
  see that entity, so removing it — or replacing such an item link by linking another
  deal, lead or project — would widen who can see the thread: only the thread's owner
  (or the operator) may; any other viewer, admins included, gets ``Forbidden`` (SPEC §9).
  Removing a link to a company-visible entity widens nothing and is open to every viewer.
  Unlinking an item also marks ``manual_items`` — the user said "not this one", so the
  next copy does not link it again. A person unlinked
  by hand is linked again by a later copy that has them as a counterpart (the address
  still names them): remove the address from the person, or block it, to stop that.
* ``set_visibility``, ``archive``, ``delete_thread``: the owner's (or the operator's)
  alone. They act on bccd's store; the write-back to the user's mailboxes is planned by
  the caller (``bccd.mailstore.actions``) in the same transaction. Delete removes the
  thread, its messages, participants, links and attachment records; attachment blobs
  stay (content-addressed, possibly shared) until ``bccd erase``.

Both end in rule §5.6 (``linking.deals``) where they change what it depends on, which
keeps the thread's ``link_state`` (SPEC §5.12) true.

Not found and not visible are the same answer (``NotFound``), so a private thread's
existence is never revealed.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bccd.errors import Forbidden, Invalid, NotFound
from bccd.linking import deals, visibility
from bccd.store import events
from bccd.store.models import Link, Message, Thread, User, utcnow
from bccd.store.queries import insert_ignore

LINK_KINDS = ("person", "organization", "deal", "lead", "project")
VISIBILITIES = ("private", "shared")


def get_thread(session: Session, thread_id: int, actor: User | None) -> Thread:
    thread = session.get(Thread, thread_id)
    if thread is None or (actor is not None and not visibility.thread_visible(session, actor,
                                                                              thread)):
        raise NotFound(f"no thread {thread_id}")
    return thread


def owner_only(thread: Thread, actor: User | None) -> None:
    """Raise unless ``actor`` may change the thread itself (its owner, or the operator)."""
    if actor is not None and actor.id != thread.owner_id:
        raise Forbidden(f"only the owner of thread {thread.id} may change it")


def _check_entity(session: Session, thread: Thread, kind: str, entity_id: int,
                  actor: User | None) -> None:
    if kind not in LINK_KINDS:
        raise Invalid(f"kind must be one of {', '.join(LINK_KINDS)}")
    ok = (visibility.entity_visible(session, actor, kind, entity_id) if actor is not None
          else visibility.entity_in_company(session, thread.company_id, kind, entity_id))
    if not ok:
        raise NotFound(f"no {kind} {entity_id}")


def may_remove(session: Session, thread: Thread, kind: str, entity_id: int,
               actor: User | None) -> bool:
    """Whether ``actor`` may remove the thread's link to (kind, entity_id)."""
    return (actor is None or actor.id == thread.owner_id
            or not visibility.link_narrows(session, kind, entity_id))


def _may_remove(session: Session, thread: Thread, kind: str, entity_id: int,
                actor: User | None) -> None:
    """Raise unless ``actor`` may remove the thread's link to (kind, entity_id)."""
    if not may_remove(session, thread, kind, entity_id, actor):
        raise Forbidden(f"only the owner of thread {thread.id} may remove its link to {kind}"
                        f" {entity_id}: that link keeps the conversation from colleagues who"
                        f" may not see the {kind}")


def link(session: Session, thread: Thread, kind: str, entity_id: int,
         actor: User | None) -> None:
    _check_entity(session, thread, kind, entity_id, actor)
    if kind in deals.ITEM_KINDS:
        replaced = session.execute(select(Link.kind, Link.entity_id).where(
            Link.thread_id == thread.id, Link.kind.in_(deals.ITEM_KINDS),
            ~((Link.kind == kind) & (Link.entity_id == entity_id)))).all()
        for old_kind, old_id in replaced:  # a thread has one item: linking replaces it
            _may_remove(session, thread, old_kind, old_id, actor)
        deals.set_item_link(session, thread.id, kind, entity_id, "manual")
        thread.manual_items = True
        return
    had = session.scalar(select(Link.id).where(Link.thread_id == thread.id, Link.kind == kind,
                                               Link.entity_id == entity_id))
    insert_ignore(session, Link, [{"thread_id": thread.id, "kind": kind, "entity_id": entity_id,
                                   "how": "manual"}])
    session.execute(update(Link).where(Link.thread_id == thread.id, Link.kind == kind,
                                       Link.entity_id == entity_id, Link.how != "manual")
                    .values(how="manual", created_at=utcnow()))
    if kind == "person":
        owner = session.get(User, thread.owner_id)
        assert owner is not None
        deals.apply(session, thread, owner)
    if had is None:  # after the rule, so the event carries the thread's link_state
        events.linked(session, thread, kind, entity_id, "manual")


def unlink(session: Session, thread: Thread, kind: str, entity_id: int,
           actor: User | None) -> None:
    if kind not in LINK_KINDS:
        raise Invalid(f"kind must be one of {', '.join(LINK_KINDS)}")
    if session.scalar(select(Link.id).where(Link.thread_id == thread.id, Link.kind == kind,
                                            Link.entity_id == entity_id)) is None:
        raise NotFound(f"thread {thread.id} is not linked to {kind} {entity_id}")
    _may_remove(session, thread, kind, entity_id, actor)
    res = session.execute(delete(Link).where(Link.thread_id == thread.id, Link.kind == kind,
                                             Link.entity_id == entity_id))
    if not getattr(res, "rowcount", 0):
        raise NotFound(f"thread {thread.id} is not linked to {kind} {entity_id}")
    if kind in deals.ITEM_KINDS:
        thread.manual_items = True
    owner = session.get(User, thread.owner_id)
    assert owner is not None
    session.flush()
    deals.apply(session, thread, owner)  # refresh suggestions (no automatic relink)


def set_visibility(session: Session, thread: Thread, value: str, actor: User | None) -> None:
    owner_only(thread, actor)
    if value not in VISIBILITIES:
        raise Invalid("visibility must be private or shared")
    thread.visibility = value


def archive(session: Session, thread: Thread, actor: User | None) -> None:
    owner_only(thread, actor)
    thread.archived = True


def delete_thread(session: Session, thread: Thread, actor: User | None) -> int:
    """→ the number of messages deleted."""
    owner_only(thread, actor)
    count = session.scalar(select(func.count()).select_from(Message)
                           .where(Message.thread_id == thread.id)) or 0
    session.execute(delete(Message).where(Message.thread_id == thread.id))
    session.execute(delete(Thread).where(Thread.id == thread.id))
    return int(count)
