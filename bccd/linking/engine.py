"""The linking layer's entry for filing one copy — the same for Smart Bcc and IMAP.

``ingest.filing`` calls, inside its one transaction:

1. ``screen(session, copy)`` → ``Screened``: the counterparts (``participants``) and the
   blocklist's verdict (``blocklist``, SPEC §5.2): drop the copy, or which counterparts
   may be linked. Nothing is written.
2. (``ingest.filing`` dedups, threads via ``linking.threading`` and inserts the message.)
3. ``link(session, copy, screened, thread, pinned=…)`` → ``{email: person_id}`` for the
   participant rows: matches the linkable counterparts to persons, creates unknown ones
   for Smart Bcc copies (``persons``, SPEC §5.5; never at the company's own domains,
   §5.10), links them and their organizations to
   the thread (``how = auto``, SPEC §5.11; a manual link is never downgraded) and applies
   the deal/lead/project rule (``deals``, SPEC §5.6), which stores the thread's
   ``link_state`` (SPEC §5.12).

``known`` (``Known``, optional for both): what the caller has already read for this copy
— ``ingest.filing`` reads the user's confirmed alternates and block patterns (when there are
any), and the persons of the copy's possible counterparts with whether they have an open
item and the organization the owner may see, in the one query it makes for the copy's
owner and dedup key. Given, the linking layer does not read them again; the decisions are
the same.

On PostgreSQL the linkable counterpart addresses that no person has and that the copy
creates no person for (the company creates no unknown contacts; IMAP sync never does; a
colleague's domain) are locked shared and looked up once more: a person given one of them
meanwhile either is found then or waits for this transaction, and its relinking pass
finds this copy (``store.queries.address_locks``). An address the copy creates a person
for meets the (company, email) constraint instead.

Failures are the database's (constraint races are absorbed by insert-or-ignore); the
caller's transaction rolls everything back together.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bccd.addresses import Addr
from bccd.linking import blocklist, deals, organizations, participants, persons
from bccd.linking.blocklist import Screened
from bccd.linking.deals import postgresql
from bccd.linking.persons import Hit
from bccd.linking.records import CompanyLike, OwnerLike, ThreadLike
from bccd.store.models import Link
from bccd.store.queries import address_locks, insert_ignore


@dataclass(frozen=True, slots=True)
class Copy:
    """One copy as the linking rules see it."""

    user: OwnerLike
    company: CompanyLike
    direction: str               # incoming | outgoing
    sender: Addr
    to: Sequence[Addr]
    cc: Sequence[Addr]
    bcc_domain: str
    may_create_persons: bool     # Smart Bcc copies only; IMAP sync never creates persons
    company_domains: Collection[str] = ()  # the company's own domains: never new persons


@dataclass(frozen=True, slots=True)
class Known:
    """What the caller already read for a copy (module docstring)."""

    alternates: Collection[str]   # the user's confirmed alternates
    patterns: Sequence[str]       # the user's block patterns
    persons: Mapping[str, Hit]    # the persons of (at least) every counterpart address
    persons_locked: bool = False  # the read share-locked them (PostgreSQL, ``linking.deals``)


def screen(session: Session, copy: Copy, known: Known | None = None) -> Screened:
    alternates = (known.alternates if known is not None
                  else participants.confirmed_alternates(session, copy.user.id))
    others = participants.counterparts(copy.direction, copy.sender, copy.to, copy.cc,
                                       {copy.user.email, *alternates}, copy.bcc_domain)
    pats = known.patterns if known is not None else blocklist.patterns(session, copy.user.id)
    return blocklist.screen(pats, direction=copy.direction, sender=copy.sender,
                            counterparts=others)


def link(
    session: Session,
    copy: Copy,
    screened: Screened,
    thread: ThreadLike,
    *,
    pinned: tuple[str, int] | None = None,
    fresh: bool = False,
    known: Known | None = None,
    thread_locked: bool = False,
) -> dict[str, int]:
    """``fresh``: the thread was created by this copy (``threading.resolve``);
    ``thread_locked``: the caller's transaction has written the thread's row."""
    emails = [a.email for a in screened.linkable]
    open_items = True  # unknown: the deal rule reads the candidates
    orgs: list[int | None] | None = None  # unknown: read back after the person links
    locked = known is not None and known.persons_locked
    if known is None:
        matched = persons.match(session, copy.company.id, emails)
    else:
        hits = {e: h for e in emails if (h := known.persons.get(e)) is not None}
        matched = {e: h.person_id for e, h in hits.items()}
        # a person created below has no item and no organization yet
        open_items = any(h.open_items for h in hits.values())
        orgs = [h.organization_id for h in hits.values()]
    unknown = [a for a in screened.linkable if a.email not in matched]
    new = persons.to_create(session, copy.company, unknown, copy.bcc_domain,
                            copy.company_domains) if copy.may_create_persons else []
    # the others stay without a person unless one is given their address right now: that
    # one either committed before the match below (which finds it) or waits for this
    # transaction (and its relinking pass finds this copy) — never neither (a created
    # address meets the constraint instead, ``persons.create``)
    guard = [a.email for a in unknown if a not in new]
    if guard and postgresql(session):
        address_locks(session, copy.company.id, guard, shared=True)
        late = persons.match(session, copy.company.id, guard)
        if late:
            matched.update(late)
            open_items, orgs, locked = True, None, False  # read for them below
    if new:
        matched.update(persons.create(session, copy.company, copy.user, new))
    person_ids = sorted({matched[e] for e in emails if e in matched})
    rows = [{"thread_id": thread.id, "kind": "person", "entity_id": pid, "how": "auto"}
            for pid in person_ids]
    insert_ignore(session, Link, rows + organizations.link_rows(thread.id, orgs or ()))
    if orgs is None and person_ids:
        organizations.sync(session, [thread.id])
    if fresh:
        deals.apply(session, thread, copy.user, pinned=pinned, fresh_persons=person_ids,
                    fresh_open_items=open_items,
                    fresh_locked=locked)
    else:
        deals.apply(session, thread, copy.user, pinned=pinned, thread_locked=thread_locked)
    return matched
