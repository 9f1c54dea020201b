"""CRM upserts for the admin API (SPEC §1): persons, organizations, deals, leads and
projects, created or replaced by ``external_id`` within the admin's company, and deleted.

Blocking functions; each does its change in one transaction and then, after the commit,
the retroactive linking it calls for (``linking.retro``, SPEC §5.7) — the same order as the
CLI commands, so the links exist when the request returns:

- a person's new addresses (all of them for a new person) → ``relink_for_addresses``;
- an existing person's organization set, changed or cleared, or an organization's
  visibility or owner changed → ``relink_organizations`` (SPEC §5.11);
- an item created, or its status, person or visibility changed → ``relink_for_item``
  (for the person it belonged to before too).

A ``PUT`` replaces the fields it names: a person's ``emails`` become exactly the list
given (removed addresses stop naming the person on stored participants; existing thread
links stay, as linking is never undone behind the user's back). References to other
entities are by ``…_id`` or ``…_external_id`` (not both), within the company.

Deleting an entity removes its links and suggestions from threads and re-applies rule
§5.6 to those threads (another open item may now be the only candidate; the thread's
``link_state`` follows); a deleted person's automatic organization links go with it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bccd import accounts, crm
from bccd.config import Settings
from bccd.errors import Invalid, NotFound
from bccd.linking import deals, organizations, retro
from bccd.mailstore import shapes as render
from bccd.store.db import Database
from bccd.store.models import (
    Company,
    Item,
    Link,
    Organization,
    Participant,
    Person,
    PersonEmail,
    Suggestion,
    Thread,
    User,
)
from bccd.web.api import schemas as S


def _company(s: Session, company_id: int) -> Company:
    company = s.get(Company, company_id)
    if company is None:
        raise NotFound("the company no longer exists")
    return company


def _one_of(what: str, by_id: int | None, by_ext: str | None) -> None:
    if by_id is not None and by_ext is not None:
        raise Invalid(f"give {what}_id or {what}_external_id, not both")


def _org_ref(s: Session, company: Company, org_id: int | None, ext: str | None) -> int | None:
    _one_of("organization", org_id, ext)
    if org_id is not None:
        org = s.get(Organization, org_id)
        if org is None or org.company_id != company.id:
            raise NotFound(f"no organization {org_id}")
        return org.id
    if ext is not None:
        found = s.scalar(select(Organization.id).where(Organization.company_id == company.id,
                                                      Organization.external_id == ext))
        if found is None:
            raise NotFound(f"no organization with external_id {ext!r}")
        return int(found)
    return None


def _person_ref(s: Session, company: Company, pid: int | None, ext: str | None) -> int | None:
    _one_of("person", pid, ext)
    if pid is not None:
        return crm.get_person(s, pid, company.id).id
    if ext is not None:
        found = s.scalar(select(Person.id).where(Person.company_id == company.id,
                                                Person.external_id == ext))
        if found is None:
            raise NotFound(f"no person with external_id {ext!r}")
        return int(found)
    return None


def _deal_ref(s: Session, company: Company, did: int | None, ext: str | None) -> int | None:
    _one_of("deal", did, ext)
    if did is not None:
        return crm.get_item(s, "deal", did, company.id).id
    if ext is not None:
        found = s.scalar(select(Item.id).where(Item.company_id == company.id, Item.kind == "deal",
                                              Item.external_id == ext))
        if found is None:
            raise NotFound(f"no deal with external_id {ext!r}")
        return int(found)
    return None


def _owner(s: Session, company: Company, email: str | None) -> int | None:
    return crm.owner_in_company(s, company, email) if email else None


# ------------------------------------------------------------------ persons
def upsert_person(db: Database, company_id: int, external_id: str, body: S.PersonIn) -> dict[str, Any]:
    with db.transaction() as s:
        company = _company(s, company_id)
        org_id = _org_ref(s, company, body.organization_id, body.organization_external_id)
        owner_id = _owner(s, company, body.owner)
        person = s.scalar(select(Person).where(Person.company_id == company.id,
                                               Person.external_id == external_id))
        created = person is None
        org_before = None if person is None else person.organization_id
        if person is None:
            person = crm.create_person(s, company, name=body.name, emails=body.emails,
                                       external_id=external_id, owner_id=owner_id,
                                       visible_to=body.visible_to)
            added = crm.person_emails(s, person.id)
        else:
            person.name = accounts.display_name(body.name)
            person.owner_id = owner_id
            person.visible_to = body.visible_to
            wanted = list(dict.fromkeys(accounts.parse_email_arg(e) for e in body.emails))
            current = crm.person_emails(s, person.id)
            gone = [e for e in current if e not in wanted]
            if gone:
                s.execute(delete(PersonEmail).where(PersonEmail.person_id == person.id,
                                                    PersonEmail.email.in_(gone)))
                s.execute(update(Participant)
                          .where(Participant.company_id == company.id,
                                 Participant.person_id == person.id, Participant.email.in_(gone))
                          .values(person_id=None))
            added = [crm.add_person_email(s, person, e) for e in wanted if e not in current]
        person.organization_id = org_id
        s.flush()
        out = render.person(s, person)
        person_id = person.id
    out["created"] = created
    out["relinked_threads"] = (retro.relink_for_addresses(db, company_id=company_id, emails=added)
                               if added else 0)
    if not created and org_before != org_id:
        out["relinked_threads"] += retro.relink_organizations(db, person_ids=[person_id])
    return out


def get_person(db: Database, company_id: int, external_id: str) -> dict[str, Any]:
    with db.read() as s:
        person = s.scalar(select(Person).where(Person.company_id == company_id,
                                               Person.external_id == external_id))
        if person is None:
            raise NotFound(f"no person with external_id {external_id!r}")
        return {**render.person(s, person), "created": False, "relinked_threads": 0}


# ------------------------------------------------------------------ organizations
def _org_out(o: Organization, created: bool) -> dict[str, Any]:
    return {"id": o.id, "name": o.name, "external_id": o.external_id, "owner_id": o.owner_id,
            "visible_to": o.visible_to, "created": created}


def upsert_organization(db: Database, company_id: int, external_id: str,
                        body: S.OrganizationIn) -> dict[str, Any]:
    with db.transaction() as s:
        company = _company(s, company_id)
        owner_id = _owner(s, company, body.owner)
        org = s.scalar(select(Organization).where(Organization.company_id == company.id,
                                                  Organization.external_id == external_id))
        created = org is None
        if org is None:
            org = Organization(company_id=company.id, external_id=external_id,
                           name=accounts.display_name(body.name))
            s.add(org)
        seen_by = (org.owner_id, org.visible_to)
        org.name = accounts.display_name(body.name)
        org.owner_id = owner_id
        org.visible_to = body.visible_to
        s.flush()
        out = _org_out(org, created)
    if not created and seen_by != (owner_id, body.visible_to):
        retro.relink_organizations(db, organization_id=out["id"])  # who may see it changed
    return out


def get_organization(db: Database, company_id: int, external_id: str) -> dict[str, Any]:
    with db.read() as s:
        org = s.scalar(select(Organization).where(Organization.company_id == company_id,
                                                  Organization.external_id == external_id))
        if org is None:
            raise NotFound(f"no organization with external_id {external_id!r}")
        return _org_out(org, False)


# ------------------------------------------------------------------ deals, leads, projects
def upsert_item(db: Database, settings: Settings, company_id: int, kind: str, external_id: str,
                body: S.ItemIn) -> dict[str, Any]:
    if body.status not in crm.ITEM_STATUSES[kind]:
        raise Invalid(f"{kind} status must be one of {', '.join(crm.ITEM_STATUSES[kind])}")
    if kind != "project" and (body.deal_id is not None or body.deal_external_id is not None):
        raise Invalid("only projects name a deal")
    with db.transaction() as s:
        company = _company(s, company_id)
        person_id = _person_ref(s, company, body.person_id, body.person_external_id)
        org_id = _org_ref(s, company, body.organization_id, body.organization_external_id)
        deal_id = _deal_ref(s, company, body.deal_id, body.deal_external_id)
        owner_id = _owner(s, company, body.owner)
        item = s.scalar(select(Item).where(Item.company_id == company.id, Item.kind == kind,
                                           Item.external_id == external_id))
        created = item is None
        person_before = None if item is None else item.person_id
        if item is None:
            item = crm.create_item(s, company, kind, title=body.title, person_id=person_id,
                                   organization_id=org_id, deal_id=deal_id, status=body.status,
                                   external_id=external_id, owner_id=owner_id,
                                   visible_to=body.visible_to)
            item.value = body.value
        else:
            crm.lock_person_items(s, item.person_id, person_id)
            item.title = body.title
            crm.set_item_status(item, body.status)
            item.person_id = person_id
            item.organization_id = org_id
            item.deal_id = deal_id
            item.owner_id = owner_id
            item.visible_to = body.visible_to
            item.value = body.value
        s.flush()
        out = render.item(item, company.slug, settings)
        item_id = item.id
    out["created"] = created
    out["relinked_threads"] = retro.relink_for_item(db, item_id, also_persons=[person_before])
    return out


def get_item(db: Database, settings: Settings, company_id: int, kind: str,
             external_id: str) -> dict[str, Any]:
    with db.read() as s:
        company = _company(s, company_id)
        item = s.scalar(select(Item).where(Item.company_id == company_id, Item.kind == kind,
                                           Item.external_id == external_id))
        if item is None:
            raise NotFound(f"no {kind} with external_id {external_id!r}")
        return {**render.item(item, company.slug, settings), "created": False,
                "relinked_threads": 0}


# ------------------------------------------------------------------ deleting
def _unlink_everywhere(s: Session, kind: str, entity_id: int) -> list[int]:
    threads = list(s.scalars(select(Link.thread_id).where(Link.kind == kind,
                                                          Link.entity_id == entity_id)))
    s.execute(delete(Link).where(Link.kind == kind, Link.entity_id == entity_id))
    s.execute(delete(Suggestion).where(Suggestion.kind == kind, Suggestion.entity_id == entity_id))
    return threads


def _reapply(s: Session, thread_ids: list[int]) -> None:
    s.flush()
    organizations.sync(s, thread_ids)  # a deleted person's organizations go with it
    for tid in sorted(set(thread_ids)):
        thread = s.get(Thread, tid)
        owner = s.get(User, thread.owner_id) if thread is not None else None
        if thread is not None and owner is not None:
            deals.apply(s, thread, owner, thread_locked=True)


def delete_entity(db: Database, company_id: int, kind: str, external_id: str) -> None:
    model: Any = {"person": Person, "organization": Organization}.get(kind, Item)
    with db.transaction() as s:
        q = select(model).where(model.company_id == company_id, model.external_id == external_id)
        if model is Item:
            q = q.where(Item.kind == kind)
        row = s.scalar(q)
        if row is None:
            raise NotFound(f"no {kind} with external_id {external_id!r}")
        # its threads first, then its person: the order filing takes them in
        deals.lock_threads(s, list(s.scalars(select(Link.thread_id).where(
            Link.kind == kind, Link.entity_id == row.id))))
        if model is Item:
            crm.lock_person_items(s, row.person_id)
        threads = _unlink_everywhere(s, kind, row.id)
        s.delete(row)
        _reapply(s, threads)
