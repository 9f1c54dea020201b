"""The CRM entities bccd keeps a copy of: organizations, persons (several emails each),
and items — deals, leads and projects (SPEC §1).

Functions take an open session and return models. Persons' email addresses are unique
per company (a constraint); the same address may belong to persons of two companies.
Changes that can affect linking (a new address, a new open item, a person's organization)
are reported to ``bccd.linking.retro`` by the caller, which owns the session and the
transaction. Every change of a person's items first locks the person
(``lock_person_items``), so filing, which reads a person's items under a share lock, is
never left with a stale answer (``bccd.linking.deals``); giving a person an address first
locks the address (``store.queries.address_locks``), so a copy filed meanwhile is either
linked to the person or found by the relinking pass that follows.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from bccd.accounts import display_name, parse_email_arg
from bccd.errors import Conflict, Invalid, NotFound
from bccd.store.models import Company, Item, Organization, Person, PersonEmail, User
from bccd.store.queries import address_locks

ITEM_KINDS = ("deal", "lead", "project")
ITEM_STATUSES = {
    "deal": ("open", "won", "lost"),
    "lead": ("open", "archived"),
    "project": ("open", "closed"),
}
VISIBLE_TO = ("company", "owner")


def owner_in_company(session: Session, company: Company, email: str) -> int:
    """The id of the user ``email`` of ``company`` (an entity's owner)."""
    addr = parse_email_arg(email, "owner")
    uid = session.scalar(select(User.id).where(User.email == addr, User.company_id == company.id))
    if uid is None:
        raise NotFound(f"no user {addr} in company {company.slug!r}")
    return uid


def lock_person_items(session: Session, *person_ids: int | None) -> None:
    """PostgreSQL: lock these persons (``FOR NO KEY UPDATE``, in id order) before one of
    their items is created or changed, until the commit; nothing on SQLite, whose
    writers take turns."""
    ids = sorted({p for p in person_ids if p is not None})
    if ids and session.get_bind().dialect.name == "postgresql":
        session.execute(select(Person.id).where(Person.id.in_(ids)).order_by(Person.id)
                        .with_for_update(key_share=True))


def get_or_create_org(session: Session, company: Company, name: str) -> Organization:
    name = display_name(name, "organization")
    org = session.scalar(
        select(Organization).where(
            Organization.company_id == company.id, func.lower(Organization.name) == name.lower()
        )
    )
    if org is None:
        org = Organization(company_id=company.id, name=name)
        session.add(org)
        session.flush()
    return org


def _check_emails_free(session: Session, company_id: int, emails: Sequence[str]) -> None:
    taken = session.scalars(
        select(PersonEmail.email).where(
            PersonEmail.company_id == company_id, PersonEmail.email.in_(emails)
        )
    ).all()
    if taken:
        raise Conflict(f"{taken[0]} already belongs to another person of this company")


def create_person(
    session: Session,
    company: Company,
    *,
    name: str,
    emails: Sequence[str],
    org: str | None = None,
    external_id: str | None = None,
    owner_id: int | None = None,
    visible_to: str = "company",
) -> Person:
    addrs = list(dict.fromkeys(parse_email_arg(e) for e in emails))
    if visible_to not in VISIBLE_TO:
        raise Invalid("visible_to must be company or owner")
    # a copy linking one of these addresses right now is seen by the relinking pass that
    # follows, or sees this person (``store.queries.address_locks``)
    address_locks(session, company.id, addrs, shared=False)
    _check_emails_free(session, company.id, addrs)
    person = Person(
        company_id=company.id,
        name=display_name(name),
        external_id=external_id,
        owner_id=owner_id,
        visible_to=visible_to,
    )
    if org:
        person.organization_id = get_or_create_org(session, company, org).id
    session.add(person)
    session.flush()
    for a in addrs:
        session.add(PersonEmail(company_id=company.id, person_id=person.id, email=a))
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("one of these addresses already belongs to another person") from None
    return person


def set_person_org(session: Session, person: Person, org: str | None) -> bool:
    """Set (a name: found case-insensitively or created) or clear (``None``) the person's
    organization; True when it changed (the caller relinks, SPEC §5.11)."""
    new = None
    if org is not None:
        company = session.get(Company, person.company_id)
        assert company is not None
        new = get_or_create_org(session, company, org).id
    changed = new != person.organization_id
    person.organization_id = new
    session.flush()
    return changed


def get_person(session: Session, person_id: int, company_id: int | None = None) -> Person:
    person = session.get(Person, person_id)
    if person is None or (company_id is not None and person.company_id != company_id):
        raise NotFound(f"no person {person_id}")
    return person


def add_person_email(session: Session, person: Person, email: str) -> str:
    addr = parse_email_arg(email)
    address_locks(session, person.company_id, [addr], shared=False)  # as create_person
    existing = session.scalar(
        select(PersonEmail).where(
            PersonEmail.company_id == person.company_id, PersonEmail.email == addr
        )
    )
    if existing is not None:
        if existing.person_id == person.id:
            return addr
        raise Conflict(f"{addr} already belongs to person {existing.person_id}")
    session.add(PersonEmail(company_id=person.company_id, person_id=person.id, email=addr))
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"{addr} already belongs to another person") from None
    return addr


def person_emails(session: Session, person_id: int) -> list[str]:
    return list(
        session.scalars(
            select(PersonEmail.email).where(PersonEmail.person_id == person_id)
            .order_by(PersonEmail.id)
        )
    )


def create_item(
    session: Session,
    company: Company,
    kind: str,
    *,
    title: str,
    person_id: int | None = None,
    organization_id: int | None = None,
    deal_id: int | None = None,
    status: str = "open",
    external_id: str | None = None,
    owner_id: int | None = None,
    visible_to: str = "company",
) -> Item:
    if kind not in ITEM_KINDS:
        raise Invalid(f"kind must be one of {', '.join(ITEM_KINDS)}")
    if status not in ITEM_STATUSES[kind]:
        raise Invalid(f"{kind} status must be one of {', '.join(ITEM_STATUSES[kind])}")
    if visible_to not in VISIBLE_TO:
        raise Invalid("visible_to must be company or owner")
    if not title.strip():
        raise Invalid("title must not be empty")
    if person_id is not None:
        get_person(session, person_id, company.id)
        lock_person_items(session, person_id)
    if deal_id is not None:
        deal = session.get(Item, deal_id)
        if deal is None or deal.company_id != company.id or deal.kind != "deal":
            raise NotFound(f"no deal {deal_id}")
    item = Item(
        company_id=company.id,
        kind=kind,
        title=title.strip(),
        status=status,
        person_id=person_id,
        organization_id=organization_id,
        deal_id=deal_id,
        external_id=external_id,
        owner_id=owner_id,
        visible_to=visible_to,
    )
    session.add(item)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"{kind} with external_id {external_id!r} already exists") from None
    return item


def get_item(session: Session, kind: str, item_id: int, company_id: int | None = None) -> Item:
    item = session.get(Item, item_id)
    if item is None or item.kind != kind or (
        company_id is not None and item.company_id != company_id
    ):
        raise NotFound(f"no {kind} {item_id}")
    return item


def set_item_status(item: Item, status: str) -> None:
    if status not in ITEM_STATUSES[item.kind]:
        raise Invalid(f"{item.kind} status must be one of {', '.join(ITEM_STATUSES[item.kind])}")
    session = object_session(item)
    if session is not None and status != item.status:
        lock_person_items(session, item.person_id)
    item.status = status
