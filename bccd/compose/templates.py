"""Mail templates (SPEC §12 ``/api/v1/me/templates``, §8 ``template list|add|remove``).

A template is a user's own, or shared with the whole company (``shared``) — only admins
share, and a shared template is changed or removed by an admin of its company; a user's
own template by that user. Blocking functions on an open session, for a user (``None``:
the operator, bound by company boundaries only); refusals are ``bccd.errors`` naming the
field:

- ``add`` / ``update``: the name, the subject and the HTML are checked for smart fields
  (``fields.check``: an unknown field is refused, naming it) and the HTML is stored
  cleaned (``signature.clean_stored``);
- ``visible(s, user, id)``: the user's own and the company's shared templates; another's
  private template is "no template";
- ``render(s, user, id, **ids)`` → ``{subject, html, text}`` for the entities given
  (``context.smart_values``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bccd.compose import context, fields
from bccd.compose.mime import to_text
from bccd.compose.signature import clean_stored
from bccd.errors import Forbidden, Invalid, NotFound
from bccd.store.models import User, utcnow
from bccd.store.models_compose import Template

MAX_HTML = 512 * 1024
MAX_SUBJECT = 998
MAX_NAME = 255


def shape(t: Template, owner_email: str | None = None) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "subject": t.subject, "html": t.html,
            "shared": t.shared, "owner": owner_email,
            "created_at": t.created_at.isoformat(), "updated_at": t.updated_at.isoformat()}


def owner_email(s: Session, t: Template) -> str | None:
    return s.scalar(select(User.email).where(User.id == t.user_id))


def list_for(s: Session, user: User) -> list[dict[str, Any]]:
    rows = s.execute(
        select(Template, User.email).join(User, User.id == Template.user_id)
        .where(Template.company_id == user.company_id,
               or_(Template.user_id == user.id, Template.shared.is_(True)))
        .order_by(Template.name, Template.id)).all()
    return [shape(t, email) for t, email in rows]


def visible(s: Session, user: User | None, template_id: int, field: str = "template_id") -> Template:
    t = s.get(Template, template_id)
    if t is None or (user is not None and (
            t.company_id != user.company_id or (t.user_id != user.id and not t.shared))):
        if field == "template_id":  # a field of a request: the request is not valid
            raise Invalid(f"{field}: no template {template_id}")
        raise NotFound(f"no template {template_id}")
    return t


def _check(name: str | None, subject: str | None, html: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name is not None:
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME:
            raise Invalid(f"name: 1 to {MAX_NAME} characters")
        out["name"] = name
    if subject is not None:
        if len(subject) > MAX_SUBJECT or any(c in subject for c in "\r\n"):
            raise Invalid(f"subject: one line of at most {MAX_SUBJECT} characters")
        fields.check(subject, "subject")
        out["subject"] = subject
    if html is not None:
        if len(html) > MAX_HTML:
            raise Invalid(f"html: at most {MAX_HTML // 1024} KiB")
        fields.check(html, "html")
        out["html"] = clean_stored(html, "html", MAX_HTML)
        fields.check(out["html"], "html")
    return out


def _may_share(user: User | None, shared: bool) -> None:
    if shared and user is not None and not user.is_admin:
        raise Forbidden("shared: only admins share templates with the company")


def add(s: Session, user: User, *, name: str, subject: str, html: str,
        shared: bool = False) -> Template:
    _may_share(user, shared)
    values = _check(name, subject, html)
    t = Template(company_id=user.company_id, user_id=user.id, shared=shared, **values)
    s.add(t)
    s.flush()
    return t


def _may_change(user: User | None, t: Template) -> None:
    if user is None or t.user_id == user.id:
        return
    if t.shared and user.is_admin:
        return
    raise Forbidden(f"template {t.id} is shared by another user: only an admin may change it")


def update(s: Session, user: User | None, template_id: int, *, name: str | None = None,
           subject: str | None = None, html: str | None = None,
           shared: bool | None = None) -> Template:
    t = visible(s, user, template_id, "id")
    _may_change(user, t)
    if shared is not None:
        _may_share(user, shared)
        t.shared = shared
    for key, value in _check(name, subject, html).items():
        setattr(t, key, value)
    t.updated_at = utcnow()
    s.flush()
    return t


def remove(s: Session, user: User | None, template_id: int) -> None:
    t = visible(s, user, template_id, "id")
    _may_change(user, t)
    s.delete(t)
    s.flush()


def render(s: Session, user: User, template_id: int, *, field: str = "template_id",
           person_id: int | None = None, organization_id: int | None = None,
           deal_id: int | None = None, lead_id: int | None = None,
           project_id: int | None = None, thread_id: int | None = None) -> dict[str, str]:
    t = visible(s, user, template_id, field)
    values = context.smart_values(s, user, person_id=person_id, organization_id=organization_id,
                                  deal_id=deal_id, lead_id=lead_id, project_id=project_id,
                                  thread_id=thread_id)
    html = fields.render(t.html, values, html=True)
    return {"subject": fields.render(t.subject, values, html=False), "html": html,
            "text": to_text(html) if html.strip() else ""}

