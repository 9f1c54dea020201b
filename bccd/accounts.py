"""Companies and users: creation, settings, Smart Bcc addresses, API tokens.

Functions take an open session (from ``Database.transaction()``) and return model
objects; callers (CLI, API) render them. Raise ``bccd.errors`` types for anything a person
should read.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bccd.addresses import (
    SLUG_RE,
    AddressError,
    default_company_domains,
    domain_of,
    hash_token,
    name_problem,
    new_bcc_token,
    normalize_domain,
    normalize_email,
    user_bcc_address,
)
from bccd.errors import Conflict, Invalid, NotFound
from bccd.store.models import Company, User


def slugify(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s[:63].strip("-") or "company"


def display_name(value: str, what: str = "name") -> str:
    """``value`` stripped, or ``Invalid`` naming ``what`` when it holds a control character
    or a line break (it may end up beside an address in a mail header)."""
    problem = name_problem(value)
    if problem is not None:
        raise Invalid(f"{what}: {problem}")
    return value.strip()


def create_company(session: Session, name: str, slug: str | None = None) -> Company:
    name = display_name(name)
    if not name:
        raise Invalid("company name must not be empty")
    slug = slug if slug is not None else slugify(name)
    if not SLUG_RE.match(slug):
        raise Invalid(f"slug {slug!r} must be lowercase letters, digits and '-'")
    if session.scalar(select(Company.id).where(Company.slug == slug)) is not None:
        raise Conflict(f"company {slug!r} already exists")
    company = Company(slug=slug, name=name)
    session.add(company)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"company {slug!r} already exists") from None
    return company


def get_company(session: Session, slug: str) -> Company:
    company = session.scalar(select(Company).where(Company.slug == slug.lower()))
    if company is None:
        raise NotFound(f"no company {slug!r}")
    return company


AUTOMATED_MAIL = ("unlinked", "store", "drop")   # SPEC §5.10 (``linking.categories``)
INTERNAL_MAIL = ("store", "drop")
MAX_DOMAINS = 100


def set_company(session: Session, company: Company, *, create_unknown_contacts: bool | None = None,
                domains: Sequence[str] | None = None, automated_mail: str | None = None,
                internal_mail: str | None = None) -> Company:
    """Change the company's settings (SPEC §1, §5.10); ``None`` leaves one as it is.
    ``domains``: its own mail domains (``[]``: back to the default, its users' login
    domains). ``Invalid`` names the setting that is wrong, and nothing changes."""
    if automated_mail is not None and automated_mail not in AUTOMATED_MAIL:
        raise Invalid(f"automated_mail must be one of {', '.join(AUTOMATED_MAIL)}")
    if internal_mail is not None and internal_mail not in INTERNAL_MAIL:
        raise Invalid(f"internal_mail must be one of {', '.join(INTERNAL_MAIL)}")
    named = _domains(domains) if domains is not None else None
    if create_unknown_contacts is not None:
        company.create_unknown_contacts = create_unknown_contacts
    if named is not None:
        company.domains = named or None
    if automated_mail is not None:
        company.automated_mail = automated_mail
    if internal_mail is not None:
        company.internal_mail = internal_mail
    return company


def _domains(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        raw = value.strip().lstrip("@")
        if not raw:
            continue
        try:
            dom = normalize_domain(raw)
        except AddressError as exc:
            raise Invalid(f"domains: {exc}") from None
        if dom not in out:
            out.append(dom)
    if len(out) > MAX_DOMAINS:
        raise Invalid(f"domains: at most {MAX_DOMAINS}")
    return out


def company_domains(session: Session, company: Company) -> tuple[list[str], bool]:
    """The company's own mail domains and whether they are the default (not named)."""
    if company.domains is not None:
        return [str(d) for d in company.domains], False
    logins = session.scalars(select(User.email).where(User.company_id == company.id))
    return default_company_domains(domain_of(e) for e in logins), True


def parse_email_arg(value: str, what: str = "email") -> str:
    try:
        return normalize_email(value)
    except AddressError as exc:
        raise Invalid(f"{what}: {exc}") from None


@dataclass(frozen=True, slots=True)
class NewUser:
    user: User
    api_token: str  # shown once; only its hash is stored


def new_api_token() -> str:
    return "bccd_" + secrets.token_urlsafe(32)


def create_user(
    session: Session, email: str, company: Company, *, name: str = "", admin: bool = False
) -> NewUser:
    addr = parse_email_arg(email)
    if session.scalar(select(User.id).where(User.email == addr)) is not None:
        raise Conflict(f"user {addr} already exists")
    token = new_api_token()
    user = User(
        company_id=company.id,
        email=addr,
        name=display_name(name),
        is_admin=admin,
        api_token_hash=hash_token(token),
        bcc_token=new_bcc_token(),
    )
    user.company = company
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"user {addr} already exists") from None
    return NewUser(user, token)


def get_user(session: Session, email: str) -> User:
    addr = parse_email_arg(email)
    user = session.scalar(select(User).where(User.email == addr))
    if user is None:
        raise NotFound(f"no user {addr}")
    return user


def user_by_api_token(session: Session, token: str) -> User | None:
    user = session.scalar(select(User).where(User.api_token_hash == hash_token(token)))
    if user is None or user.disabled:
        return None
    return user


def bcc_address(user: User, bcc_domain: str) -> str:
    return user_bcc_address(user.company.slug, user.bcc_token, bcc_domain)


def rotate_address(session: Session, user: User) -> None:
    user.bcc_token = new_bcc_token()
    session.flush()


SHARING = ("private", "shared")
LINKING = ("auto", "manual")
EMAIL_LINKS = ("app", "default-client")


def set_user(
    session: Session,
    user: User,
    *,
    sharing: str | None = None,
    linking: str | None = None,
    email_links: str | None = None,
) -> None:
    if sharing is not None:
        if sharing not in SHARING:
            raise Invalid("sharing must be private or shared")
        user.sharing_default = sharing
    if linking is not None:
        if linking not in LINKING:
            raise Invalid("linking must be auto or manual")
        user.linking_mode = linking
    if email_links is not None:
        if email_links not in EMAIL_LINKS:
            raise Invalid("email_links must be app or default-client")
        user.email_links = email_links
    session.flush()


def generate_secret() -> str:
    return secrets.token_urlsafe(32)
