"""Which Smart Bcc address a recipient names (SPEC §2, §3): a user's address, a signed
deal/lead/project address, or nothing we know.

``resolve(session, settings, address)`` → ``Target`` or a refusal ``Reply``:
another domain → 550 5.7.1 (never relay); unknown, rotated-away, disabled, or a forged
or stale entity signature → 550 5.1.1. For a pinned entity address the user is found at
DATA time from the From header (the sender must be a user of that company), so the
target carries ``user_id = None`` until then; a sender who is a *disabled* user of that
company (``disabled_user_for_sender``) is answered 550 5.1.1 there, as for their own
address.
"""

from __future__ import annotations

import functools

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from bccd import replies as R
from bccd.addresses import AddressError, normalize_domain, parse_bcc_local_part, verify_entity_signature
from bccd.config import Settings
from bccd.ingest.types import Target
from bccd.replies import Reply
from bccd.store import direct
from bccd.store.models import Alternate, Company, Item, User

# built once (bound parameters), not per RCPT, and run on the session's connection (plain
# rows: no ORM entities are loaded): SQLAlchemy skips the statement's construction and
# the ORM execution layer on the hot path
_USER_BY_TOKEN = (
    select(User.id, User.company_id, User.disabled, Company.slug)
    .join(Company, Company.id == User.company_id)
    .where(User.bcc_token == bindparam("token"))
)
_ITEM_BY_ID = (
    select(Item.id, Item.kind, Item.company_id, Company.slug)
    .join(Company, Company.id == Item.company_id)
    .where(Item.id == bindparam("item_id"))
)


def split(address: str) -> tuple[str, str] | None:
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return None
    try:
        return local, _normalize_domain(domain)
    except AddressError:
        return None


# IDNA/UTS #46 of the same few domains for every RCPT: a pure function, kept for recent
# values (an invalid domain raises and is never kept)
_normalize_domain = functools.lru_cache(maxsize=1024)(normalize_domain)


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
        row = direct.execute(session.connection(), _USER_BY_TOKEN, {"token": target.token}).first()
        if row is None or row.disabled or row.slug != target.slug:
            return R.UNKNOWN_RECIPIENT
        return Target(rcpt=rcpt, user_id=row.id, company_id=row.company_id)
    if not verify_entity_signature(settings.secret_keys, target):
        return R.UNKNOWN_RECIPIENT
    assert target.entity_id is not None
    row2 = direct.execute(session.connection(), _ITEM_BY_ID, {"item_id": target.entity_id}).first()
    if row2 is None or row2.kind != target.kind or row2.slug != target.slug:
        return R.UNKNOWN_RECIPIENT
    return Target(rcpt=rcpt, user_id=None, company_id=row2.company_id,
                  pinned_kind=row2.kind, pinned_id=row2.id)


def company_user_for_sender(session: Session, company_id: int, sender: str) -> int | None:
    """The enabled user of the company whose login or confirmed alternate is ``sender``."""
    return _user_for_sender(session, company_id, sender, disabled=False)


def disabled_user_for_sender(session: Session, company_id: int, sender: str) -> int | None:
    """The disabled user of the company whose login or alternate is ``sender``."""
    return _user_for_sender(session, company_id, sender, disabled=True)


def _user_for_sender(session: Session, company_id: int, sender: str, *,
                     disabled: bool) -> int | None:
    by_login, by_alternate = _BY_SENDER[disabled]
    conn = session.connection()
    params = {"company_id": company_id, "sender": sender}
    uid = direct.execute(conn, by_login, params).scalar()
    if uid is None:
        uid = direct.execute(conn, by_alternate, params).scalar()
    return int(uid) if uid is not None else None


def _by_sender(disabled: bool) -> tuple[Select[int], Select[int]]:
    state = User.disabled.is_(disabled)
    by_login = select(User.id).where(
        User.company_id == bindparam("company_id"), User.email == bindparam("sender"), state)
    by_alternate = (
        select(User.id)
        .join(Alternate, Alternate.user_id == User.id)
        .where(User.company_id == bindparam("company_id"), state,
               Alternate.email == bindparam("sender"), Alternate.status == "confirmed")
        .limit(1)
    )
    return by_login, by_alternate


_BY_SENDER = {False: _by_sender(False), True: _by_sender(True)}
