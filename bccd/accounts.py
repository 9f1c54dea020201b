"""Companies and users: creation, settings, Smart Bcc addresses, API tokens.

Functions take an open session (from ``Database.transaction()``) and return model
objects; callers (CLI, API) render them. Raise ``bccd.errors`` types for anything a person
should read.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bccd.addresses import (
    SLUG_RE,
    AddressError,
    hash_token,
    name_problem,
    new_bcc_token,
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
