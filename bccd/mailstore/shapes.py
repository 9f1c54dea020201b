"""JSON shapes of the public interface (SPEC §8): one function per entity, shared by the
CLI and the HTTP API so both speak the same fields (``user_full`` is ``user_brief`` and
the user's settings)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd.accounts import bcc_address, company_domains
from bccd.addresses import entity_bcc_address
from bccd.config import Settings
from bccd.store.models import Alternate, Blocked, Company, Item, Person, PersonEmail, User


def company(c: Company, session: Session | None = None) -> dict[str, Any]:
    """With ``session``, its mail settings too (SPEC §5.10): ``domains`` (its own — the
    default, its users' login domains, unless named: ``domains_default``),
    ``automated_mail``, ``internal_mail``. ``tracking``: its policy (SPEC §13)."""
    out: dict[str, Any] = {"id": c.id, "slug": c.slug, "name": c.name,
                           "create_unknown_contacts": c.create_unknown_contacts,
                           "tracking": c.tracking}
    if session is not None:
        domains, default = company_domains(session, c)
        out.update(domains=domains, domains_default=default, automated_mail=c.automated_mail,
                   internal_mail=c.internal_mail)
    return out


def user_brief(u: User, settings: Settings) -> dict[str, Any]:
    return {
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "company": u.company.slug,
        "admin": u.is_admin,
        "disabled": u.disabled,
        "bcc_address": bcc_address(u, settings.smtp.bcc_domain),
    }


def user_full(session: Session, u: User, settings: Settings) -> dict[str, Any]:
    alts = session.scalars(select(Alternate).where(Alternate.user_id == u.id).order_by(Alternate.id))
    blocked = session.scalars(select(Blocked.pattern).where(Blocked.user_id == u.id).order_by(Blocked.id))
    return {
        **user_brief(u, settings),
        "sharing_default": u.sharing_default,
        "linking_mode": u.linking_mode,
        "email_links": u.email_links,
        "tracking_opens": u.tracking_opens,
        "tracking_clicks": u.tracking_clicks,
        "alternates": [{"email": a.email, "status": a.status} for a in alts],
        "blocked": list(blocked),
    }


def person(session: Session, p: Person) -> dict[str, Any]:
    """``bouncing``: its addresses a bounce of the owner's mail said fail (SPEC §5.10)."""
    rows = session.execute(
        select(PersonEmail.email, PersonEmail.bouncing_since, PersonEmail.bounce_reason)
        .where(PersonEmail.person_id == p.id).order_by(PersonEmail.id)
    ).all()
    return {
        "id": p.id,
        "name": p.name,
        "emails": [r.email for r in rows],
        "bouncing": [{"email": r.email, "since": r.bouncing_since.isoformat(),
                      "reason": r.bounce_reason or ""} for r in rows if r.bouncing_since],
        "organization_id": p.organization_id,
        "external_id": p.external_id,
        "owner_id": p.owner_id,
        "visible_to": p.visible_to,
    }


def item(i: Item, company_slug: str, settings: Settings) -> dict[str, Any]:
    return {
        "id": i.id,
        "kind": i.kind,
        "title": i.title,
        "status": i.status,
        "person_id": i.person_id,
        "organization_id": i.organization_id,
        "deal_id": i.deal_id,
        "external_id": i.external_id,
        "owner_id": i.owner_id,
        "visible_to": i.visible_to,
        "value": i.value,
        "bcc_address": entity_bcc_address(
            settings.security.secret_key, company_slug, i.kind, i.id, settings.smtp.bcc_domain
        ),
    }
