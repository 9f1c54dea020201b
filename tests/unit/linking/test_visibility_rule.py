"""SPEC §1/§5.8: the SQL form of the visibility rule (used by every listing) gives the
same answers as the Python form (used for one thread), over every combination of thread
visibility, links and entity visibility — and both match the SPEC's table."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from bccd.linking import visibility
from bccd.store.db import Database
from bccd.store.models import Company, Item, Link, Organization, Person, Thread, User

pytestmark = [pytest.mark.spec("1"), pytest.mark.spec("5.8")]


def _user(s, company: Company, name: str, admin: bool = False) -> User:
    u = User(company_id=company.id, email=f"{name}@{company.slug}.test", is_admin=admin,
             api_token_hash=f"h-{company.slug}-{name}", bcc_token=f"t{company.slug}{name}")
    s.add(u)
    s.flush()
    return u


def test_sql_and_python_forms_agree_and_follow_the_spec(db: Database) -> None:
    with db.transaction() as s:
        acme, other = Company(slug="acme", name="Acme"), Company(slug="other", name="Other")
        s.add_all([acme, other])
        s.flush()
        owner, colleague = _user(s, acme, "owner"), _user(s, acme, "colleague")
        admin, stranger = _user(s, acme, "admin", admin=True), _user(s, other, "stranger")
        entities: dict[str, tuple[str, int]] = {}
        for vis in ("company", "owner"):
            p = Person(company_id=acme.id, name=f"p-{vis}", visible_to=vis, owner_id=owner.id)
            o = Organization(company_id=acme.id, name=f"o-{vis}", visible_to=vis,
                             owner_id=owner.id)
            d = Item(company_id=acme.id, kind="deal", title=f"d-{vis}", visible_to=vis,
                     owner_id=owner.id)
            s.add_all([p, o, d])
            s.flush()
            entities[f"person-{vis}"] = ("person", p.id)
            entities[f"org-{vis}"] = ("organization", o.id)
            entities[f"deal-{vis}"] = ("deal", d.id)
        entities["gone"] = ("person", 10_000)
        foreign = Person(company_id=other.id, name="foreign")
        s.add(foreign)
        s.flush()
        entities["foreign"] = ("person", foreign.id)

        link_sets = [()] + [(k,) for k in entities] + [
            ("person-company", "deal-owner"), ("person-company", "org-company", "deal-company")]
        expected: dict[int, dict[int, bool]] = {}
        for vis, names in itertools.product(("private", "shared"), link_sets):
            t = Thread(company_id=acme.id, owner_id=owner.id, visibility=vis)
            s.add(t)
            s.flush()
            for n in names:
                kind, eid = entities[n]
                s.add(Link(thread_id=t.id, kind=kind, entity_id=eid, how="auto"))
            shared_linked = vis == "shared" and bool(names)
            restricted = any(n.endswith("-owner") for n in names)
            broken = any(n in ("gone", "foreign") for n in names)
            expected[t.id] = {
                owner.id: True,
                colleague.id: shared_linked and not restricted and not broken,
                admin.id: shared_linked and not broken,
                stranger.id: False,
            }
        s.flush()
        for user in (owner, colleague, admin, stranger):
            listed = set(s.scalars(select(Thread.id).where(visibility.thread_visible_clause(user))))
            for tid, by_user in expected.items():
                t = s.get(Thread, tid)
                assert t is not None
                want = by_user[user.id]
                assert visibility.thread_visible(s, user, t) is want, (user.email, tid)
                assert (tid in listed) is want, (user.email, tid)
