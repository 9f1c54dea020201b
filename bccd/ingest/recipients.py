"""Which Smart Bcc address a recipient names (SPEC §2, §3): a user's address, a signed
deal/lead/project address, or nothing we know.

``resolve(session, settings, address)`` → ``Target`` or a refusal ``Reply``:
another domain → 550 5.7.1 (never relay); unknown, rotated-away, disabled, or a forged
or stale entity signature → 550 5.1.1. For a pinned entity address the user is found at
DATA time from the From header (the sender must be a user of that company), so the
target carries ``user_id = 0`` until then; a sender who is a *disabled* user of that
company (``disabled_user_for_sender``) is answered 550 5.1.1 there, as for their own
address.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd.addresses import AddressError, normalize_domain, parse_bcc_local_part, verify_entity_signature
from bccd.config import Settings
from bccd.ingest.types import Target
from bccd.smtp import replies as R
from bccd.smtp.replies import Reply
from bccd.store.models import Company, Item, User


def split(address: str) -> tuple[str, str] | None:
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return None
    try:
        return local, normalize_domain(domain)
    except AddressError:
        return None


def is_local_domain(settings: Settings, domain: str) -> bool:
    return domain == settings.smtp.bcc_domain


def resolve(session: Session, settings: Settings, address: str) -> Target | Reply:
    parts = split(address)
    if parts is None:
        return R.BAD_ADDRESS_SYNTAX
    local, domain = parts
    if not is_local_domain(settings, domain):
        return R.RELAY_DENIED
    target = parse_bcc_local_part(local)
    if target is None:
        return R.UNKNOWN_RECIPIENT
    rcpt = f"{local.lower()}@{domain}"
    if target.token is not None:
        row = session.execute(
            select(User.id, User.company_id, User.disabled, Company.slug)
            .join(Company, Company.id == User.company_id)
            .where(User.bcc_token == target.token)
        ).first()
        if row is None or row.disabled or row.slug != target.slug:
            return R.UNKNOWN_RECIPIENT
        return Target(rcpt=rcpt, user_id=row.id, company_id=row.company_id)
    if not verify_entity_signature(settings.secret_keys, target):
        return R.UNKNOWN_RECIPIENT
    assert target.entity_id is not None
    row2 = session.execute(
        select(Item.id, Item.kind, Item.company_id, Company.slug)
        .join(Company, Company.id == Item.company_id)
        .where(Item.id == target.entity_id)
    ).first()
    if row2 is None or row2.kind != target.kind or row2.slug != target.slug:
        return R.UNKNOWN_RECIPIENT
    return Target(rcpt=rcpt, user_id=0, company_id=row2.company_id,
                  pinned_kind=row2.kind, pinned_id=row2.id)


def company_user_for_sender(session: Session, company_id: int, sender: str) -> int | None:
    """The enabled user of the company whose login or confirmed alternate is ``sender``."""
    from bccd.store.models import Alternate

    uid = session.scalar(
        select(User.id).where(User.company_id == company_id, User.email == sender,
                              User.disabled.is_(False))
    )
    if uid is not None:
        return uid
    return session.scalar(
        select(User.id)
        .join(Alternate, Alternate.user_id == User.id)
        .where(User.company_id == company_id, User.disabled.is_(False),
               Alternate.email == sender, Alternate.status == "confirmed")
        .limit(1)
    )


def disabled_user_for_sender(session: Session, company_id: int, sender: str) -> int | None:
    """The disabled user of the company whose login or alternate is ``sender``."""
    from bccd.store.models import Alternate

    uid = session.scalar(
        select(User.id).where(User.company_id == company_id, User.email == sender,
                              User.disabled.is_(True))
    )
    if uid is not None:
        return uid
    return session.scalar(
        select(User.id)
        .join(Alternate, Alternate.user_id == User.id)
        .where(User.company_id == company_id, User.disabled.is_(True),
               Alternate.email == sender, Alternate.status == "confirmed")
        .limit(1)
    )
