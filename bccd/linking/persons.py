"""Persons (SPEC §5.5): every counterpart address is matched case-insensitively (the
addresses are stored normalized) against the company's persons through the unique
(company, email) index — one indexed lookup per message, whatever the company's size.

``match(session, company_id, emails)`` → ``{email: person_id}`` for the known ones.

``create_unknown(session, company, user, addrs, bcc_domain)`` → ``{email: person_id}``
for the counterparts it created. Smart Bcc path only (the caller decides: IMAP sync never
creates persons), only when the company's ``create_unknown_contacts`` is on, and never
for an address at the company's own users' domains (logins and confirmed alternates of
every user of the company) or at the Bcc domain. The new person's name is the display
name (else the local part); it is owned by the user whose copy created it and visible to
the company. Concurrent creators of the same address converge on one person: the email
row is inserted under the unique constraint and the loser's person row is removed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bccd.addresses import domain_of
from bccd.ingest.parse import Addr
from bccd.linking.participants import at_bcc_domain
from bccd.store.models import Alternate, Company, Person, PersonEmail, User
from bccd.store.queries import insert_ignore


def match(session: Session, company_id: int, emails: Sequence[str]) -> dict[str, int]:
    if not emails:
        return {}
    rows = session.execute(
        select(PersonEmail.email, PersonEmail.person_id).where(
            PersonEmail.company_id == company_id, PersonEmail.email.in_(list(emails))
        )
    ).all()
    return {e: p for e, p in rows}


def own_domains(session: Session, company_id: int) -> set[str]:
    """Domains of the company's users: logins and confirmed alternates."""
    logins = session.scalars(select(User.email).where(User.company_id == company_id)).all()
    alts = session.scalars(
        select(Alternate.email)
        .join(User, User.id == Alternate.user_id)
        .where(User.company_id == company_id, Alternate.status == "confirmed")
    ).all()
    return {domain_of(a) for a in [*logins, *alts]}


def creatable(addrs: Sequence[Addr], own_doms: set[str], bcc_domain: str) -> list[Addr]:
    return [a for a in addrs
            if domain_of(a.email) not in own_doms and not at_bcc_domain(a.email, bcc_domain)]


def display_name(a: Addr) -> str:
    name = " ".join(a.name.split()).strip("'\" ")
    if not name or "@" in name:  # "bob@client.test" <bob@client.test> says nothing more
        name = a.email.partition("@")[0]
    return name[:255]


def create_unknown(
    session: Session, company: Company, user: User, addrs: Sequence[Addr], bcc_domain: str
) -> dict[str, int]:
    if not company.create_unknown_contacts or not addrs:
        return {}
    wanted = creatable(addrs, own_domains(session, company.id), bcc_domain)
    created: dict[str, int] = {}
    for a in wanted:
        person = Person(company_id=company.id, name=display_name(a), owner_id=user.id)
        session.add(person)
        session.flush()
        insert_ignore(session, PersonEmail, [{"company_id": company.id, "person_id": person.id,
                                              "email": a.email}])
        holder = session.scalar(
            select(PersonEmail.person_id).where(
                PersonEmail.company_id == company.id, PersonEmail.email == a.email
            )
        )
        if holder != person.id:  # a concurrent copy created them first: use theirs
            session.execute(delete(Person).where(Person.id == person.id))
        if holder is not None:
            created[a.email] = holder
    return created
