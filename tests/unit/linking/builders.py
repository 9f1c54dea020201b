"""Small builders for linking state in unit tests."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bccd.store.models import Company, User


def company_and_user(s: Session) -> tuple[Company, User]:
    """Company "acme" and its user alice@acme.test, flushed."""
    c = Company(slug="acme", name="Acme")
    s.add(c)
    s.flush()
    u = User(company_id=c.id, email="alice@acme.test", api_token_hash="h", bcc_token="t" * 16)
    s.add(u)
    s.flush()
    return c, u
