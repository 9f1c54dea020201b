"""Persons (SPEC §5.5): every counterpart address is matched case-insensitively (the
addresses are stored normalized) against the company's persons through the unique
(company, email) index — one indexed lookup per message, whatever the company's size.

``match(session, company_id, emails)`` → ``{email: person_id}`` for the known ones.
(``ingest.filing`` reads the same in its one query per copy, as ``Hit`` records that also
say whether the person has an open item and which organization of theirs the copy's owner
may see — see ``engine.Known``.)

``to_create(session, company, addrs, bcc_domain, company_domains)`` → the counterparts
that get a new person, and ``create(session, company, user, addrs)`` → ``{email:
person_id}`` for those it created. Smart Bcc path only (the caller decides: IMAP sync
never creates persons), only when the company's ``create_unknown_contacts`` is on, and
never for an address at the company's own users' domains (logins and confirmed alternates
of every user of the company), at one of the company's ``domains`` (SPEC §5.10) or at the
Bcc domain. Mail filed "unlinked" (§5.10) does not come here at all. The new person's name is the display
name (else the local part); it is owned by the user whose copy created it and visible to
the company. Concurrent creators of the same address converge on one person: the email
row is inserted under the unique constraint and the loser's person row is removed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, union_all
from sqlalchemy.orm import Session

from bccd.addresses import Addr, domain_of
from bccd.linking.participants import at_bcc_domain
from bccd.linking.records import CompanyLike, OwnerLike
from bccd.store import direct
from bccd.store.models import Alternate, Person, PersonEmail, User, utcnow
from bccd.store.queries import FixedIn, insert_ignore_returning

_PE = PersonEmail.__table__
_U = User.__table__
_A = Alternate.__table__
_MATCH = FixedIn(_PE.c.email, "e", lambda in_: select(_PE.c.email, _PE.c.person_id).where(
    _PE.c.company_id == bindparam("c"), in_))
_OWN_DOMAIN_ADDRESSES = union_all(
    select(_U.c.email).where(_U.c.company_id == bindparam("c")),
    select(_A.c.email).join(_U, _U.c.id == _A.c.user_id)
    .where(_U.c.company_id == bindparam("c"), _A.c.status == "confirmed"),
)
_NEW_PERSON = insert(Person).returning(Person.id)
_HOLDER = select(_PE.c.person_id).where(_PE.c.company_id == bindparam("c"),
                                        _PE.c.email == bindparam("e"))
_DROP_PERSON = delete(Person).where(Person.id == bindparam("p"))


@dataclass(frozen=True, slots=True)
class Hit:
    """A counterpart address that is a person's."""

    person_id: int
    open_items: bool             # the person has an open deal, lead or project
    organization_id: int | None = None  # their organization, if the copy's owner may see it
    bouncing_since: dt.datetime | None = None  # the address bounced (SPEC §5.10)


def match(session: Session, company_id: int, emails: Sequence[str]) -> dict[str, int]:
    if not emails:
        return {}
    stmt, params = _MATCH(emails)
    rows = direct.execute(session.connection(), stmt, {"c": company_id, **params})
    return {e: p for e, p in rows}


def own_domains(session: Session, company_id: int) -> set[str]:
    """Domains of the company's users: logins and confirmed alternates."""
    rows = direct.execute(session.connection(), _OWN_DOMAIN_ADDRESSES, {"c": company_id})
    return {domain_of(a) for (a,) in rows}


def creatable(addrs: Sequence[Addr], own_doms: set[str], bcc_domain: str) -> list[Addr]:
    return [a for a in addrs
            if domain_of(a.email) not in own_doms and not at_bcc_domain(a.email, bcc_domain)]


def display_name(a: Addr) -> str:
    name = " ".join(a.name.split()).strip("'\" ")
    if not name or "@" in name:  # "bob@client.test" <bob@client.test> says nothing more
        name = a.email.partition("@")[0]
    return name[:255]


def to_create(session: Session, company: CompanyLike, addrs: Sequence[Addr], bcc_domain: str,
              company_domains: Collection[str] = ()) -> list[Addr]:
    """Which of ``addrs`` (no person has them) get a new person: none unless the company
    creates unknown contacts; ``company_domains``: the company's own mail domains (SPEC
    §5.10), whose addresses are colleagues', never new persons."""
    if not company.create_unknown_contacts or not addrs:
        return []
    return creatable(addrs, own_domains(session, company.id) | set(company_domains), bcc_domain)


def create(session: Session, company: CompanyLike, user: OwnerLike,
           wanted: Sequence[Addr]) -> dict[str, int]:
    """A person for each of ``wanted`` (``to_create``'s); a concurrent copy that created
    one first wins (module docstring)."""
    created: dict[str, int] = {}
    conn = session.connection()
    for a in wanted:
        pid = direct.execute(conn, _NEW_PERSON, {
            "company_id": company.id, "name": display_name(a), "organization_id": None,
            "external_id": None, "owner_id": user.id, "visible_to": "company",
            "created_at": utcnow()}).scalar_one()
        won = insert_ignore_returning(session, PersonEmail, {
            "company_id": company.id, "person_id": pid, "email": a.email}, "person_id")
        if won is not None:
            created[a.email] = pid
            continue
        # a concurrent copy created them first: use theirs
        direct.execute(conn, _DROP_PERSON, {"p": pid})
        holder = direct.execute(conn, _HOLDER, {"c": company.id, "e": a.email}).scalar()
        if holder is not None:
            created[a.email] = holder
    return created
