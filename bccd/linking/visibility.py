"""Who may see what (SPEC §1, §5.8) — the one rule every listing goes through.

* An entity (person, organization, deal, lead, project) is visible to a user of its
  company when it is visible to the company (``visible_to = company``) or the user owns
  it; admins see every entity of their company.
* A private thread is visible to its owner only — not even to admins.
* A shared thread is visible to another user of the same company only if it is linked
  and that user may see every linked entity (a link to an entity that no longer exists
  hides the thread: it cannot be shown to be visible).
* A thread's visibility is fixed at creation from the owner's ``sharing_default``;
  changing the default later affects new threads only. The owner changes one thread
  with ``mail set THREAD_ID --visibility``.

* A link to an entity that is not visible to the whole company (``visible_to = owner``,
  or an entity that no longer exists) *narrows* a shared thread: it keeps the thread from
  every colleague who may not see that entity. Removing such a link widens who can see the
  thread, so only the thread's owner may (``link_narrows``; ``linking.manual`` enforces it).

Two forms of the same rule: ``thread_visible`` (one thread, in Python) and
``visible_threads`` / ``thread_visible_clause`` (a SQL filter, so listings stay indexed
queries whatever the company's size). Tests hold them to the same answers. The entity
rule is stated once, in ``owner_or_company`` (a SQL filter on any entity row, used by
listings here, ``linking.deals``' compiled candidate lookups and the link choices) and
in ``entity_visible`` (one entity, in Python).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bccd.store.models import Item, Link, Organization, Person, Suggestion, Thread, User

ITEM_KINDS = ("deal", "lead", "project")


def _entity(session: Session, kind: str, entity_id: int) -> Person | Organization | Item | None:
    if kind == "person":
        return session.get(Person, entity_id)
    if kind == "organization":
        return session.get(Organization, entity_id)
    if kind in ITEM_KINDS:
        item = session.get(Item, entity_id)
        return item if item is not None and item.kind == kind else None
    return None


def entity_in_company(session: Session, company_id: int, kind: str, entity_id: int) -> bool:
    ent = _entity(session, kind, entity_id)
    return ent is not None and ent.company_id == company_id


def entity_visible(session: Session, user: User, kind: str, entity_id: int) -> bool:
    ent = _entity(session, kind, entity_id)
    if ent is None or ent.company_id != user.company_id:
        return False
    return user.is_admin or ent.visible_to == "company" or ent.owner_id == user.id


def link_narrows(session: Session, kind: str, entity_id: int) -> bool:
    """A link to this entity keeps a shared thread from someone in the company: the entity
    is visible to its owner only, or no longer exists (which hides the thread too)."""
    ent = _entity(session, kind, entity_id)
    return ent is None or ent.visible_to != "company"


def thread_visible(session: Session, user: User, thread: Thread) -> bool:
    if thread.owner_id == user.id:
        return True
    if thread.company_id != user.company_id or thread.visibility != "shared":
        return False
    links = session.execute(
        select(Link.kind, Link.entity_id).where(Link.thread_id == thread.id)
    ).all()
    if not links:
        return False
    return all(entity_visible(session, user, k, e) for k, e in links)


def owner_or_company(entity: Any, user_id: Any) -> ColumnElement[bool]:
    """SQL: the entity row (a model, or a table's columns) is visible to the (non-admin)
    user with id ``user_id`` — a value or a bound parameter: visible to the company, or
    owned by them. The company check is the caller's."""
    return or_(entity.visible_to == "company", entity.owner_id == user_id)


def entity_visible_clause(model: Any, user: User) -> ColumnElement[bool]:
    """SQL: an entity row of ``model`` is visible to ``user`` (``entity_visible``)."""
    if user.is_admin:
        return model.company_id == user.company_id  # type: ignore[no-any-return]
    return and_(model.company_id == user.company_id, owner_or_company(model, user.id))


def link_visible_clause(user: User, link: Any = Link) -> ColumnElement[bool]:
    """SQL: the entity named by ``link`` (Link or Suggestion) is visible to ``user``."""
    return or_(
        and_(link.kind == "person", exists().where(
            Person.id == link.entity_id, entity_visible_clause(Person, user))),
        and_(link.kind == "organization", exists().where(
            Organization.id == link.entity_id, entity_visible_clause(Organization, user))),
        and_(link.kind.in_(ITEM_KINDS), exists().where(
            Item.id == link.entity_id, Item.kind == link.kind, entity_visible_clause(Item, user))),
    )


def thread_visible_clause(user: User) -> ColumnElement[bool]:
    """SQL: ``Thread`` is visible to ``user`` (the same rule as ``thread_visible``)."""
    linked = exists().where(Link.thread_id == Thread.id)
    hidden_link = exists().where(Link.thread_id == Thread.id, ~link_visible_clause(user))
    return or_(
        Thread.owner_id == user.id,
        and_(Thread.company_id == user.company_id, Thread.visibility == "shared",
             linked, ~hidden_link),
    )


def visible_threads(session: Session, user: User, *, limit: int | None = None) -> list[Thread]:
    """Every thread ``user`` may see, newest first."""
    q = (select(Thread).where(thread_visible_clause(user))
         .order_by(Thread.last_message_at.desc(), Thread.id.desc()))
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


def suggestion_visible_clause(user: User) -> ColumnElement[bool]:
    return link_visible_clause(user, Suggestion)
