"""Small builders for linking state in unit tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bccd.store.models import Company, ImapAccount, Person, PersonEmail, User


def company_and_user(s: Session, **user: Any) -> tuple[Company, User]:
    """Company "acme" and its user alice@acme.test (``user``: other column values),
    flushed."""
    c = Company(slug="acme", name="Acme")
    s.add(c)
    s.flush()
    u = User(company_id=c.id, **{"email": "alice@acme.test", "api_token_hash": "h",
                                 "bcc_token": "t" * 16, **user})
    s.add(u)
    s.flush()
    return c, u


def bob_and_imap_account(s: Session, company: Company, user: User) -> tuple[Person, ImapAccount]:
    """Person Bob (bob@client.test) of ``company`` and an IMAP account of ``user``, flushed."""
    bob = Person(company_id=company.id, name="Bob")
    s.add(bob)
    s.flush()
    s.add(PersonEmail(company_id=company.id, person_id=bob.id, email="bob@client.test"))
    acct = ImapAccount(user_id=user.id, host="imap.test", port=993, username="alice",
                       secret_enc="x")
    s.add(acct)
    s.flush()
    return bob, acct
