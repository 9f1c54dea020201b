"""``bccd person create|list|add-email|set``.

Creating a person or adding an address triggers retroactive linking (SPEC §5.7) right
after the commit, and so does changing a person's organization (``set --org NAME`` or
``--no-org``, SPEC §5.11: the automatic organization links of their threads follow): the
output's ``relinked_threads`` counts the threads that changed.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from bccd import accounts, crm
from bccd.cli.context import Context
from bccd.mailstore import shapes as render
from bccd.store.models import Person


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("person", help="CRM persons")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = s.add_parser("create", parents=[common], help="create a person")
    c.add_argument("--company", required=True, metavar="SLUG")
    c.add_argument("--name", required=True)
    c.add_argument("--email", action="append", required=True, metavar="EMAIL")
    c.add_argument("--org", metavar="NAME")
    c.add_argument("--owner", metavar="EMAIL", help="the user who owns the person")
    c.add_argument("--visible-to", choices=crm.VISIBLE_TO, default="company")
    c.set_defaults(handler=create)
    ls = s.add_parser("list", parents=[common], help="list a company's persons")
    ls.add_argument("--company", required=True, metavar="SLUG")
    ls.set_defaults(handler=list_)
    a = s.add_parser("add-email", parents=[common], help="add an address to a person")
    a.add_argument("id", type=int)
    a.add_argument("email")
    a.set_defaults(handler=add_email)
    st = s.add_parser("set", parents=[common], help="change a person's organization")
    st.add_argument("id", type=int)
    org = st.add_mutually_exclusive_group(required=True)
    org.add_argument("--org", metavar="NAME", help="the organization (created if new)")
    org.add_argument("--no-org", action="store_true", help="no organization")
    st.set_defaults(handler=set_)


def create(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.linking import retro

    db = ctx.database()
    with db.transaction() as s:
        company = accounts.get_company(s, args.company)
        owner_id = crm.owner_in_company(s, company, args.owner) if args.owner else None
        p = crm.create_person(s, company, name=args.name, emails=args.email, org=args.org,
                              owner_id=owner_id, visible_to=args.visible_to)
        out = render.person(s, p)
    out["relinked_threads"] = retro.relink_for_addresses(db, company_id=p.company_id,
                                                         emails=out["emails"])
    return out


def list_(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        company = accounts.get_company(s, args.company)
        q = select(Person).where(Person.company_id == company.id).order_by(Person.id)
        return [render.person(s, p) for p in s.scalars(q)]


def add_email(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.linking import retro

    db = ctx.database()
    with db.transaction() as s:
        p = crm.get_person(s, args.id)
        addr = crm.add_person_email(s, p, args.email)
        out = render.person(s, p)
    out["relinked_threads"] = retro.relink_for_addresses(db, company_id=p.company_id,
                                                         emails=[addr])
    return out


def set_(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.linking import retro

    db = ctx.database()
    with db.transaction() as s:
        p = crm.get_person(s, args.id)
        changed = crm.set_person_org(s, p, None if args.no_org else args.org)
        out = render.person(s, p)
    out["relinked_threads"] = retro.relink_organizations(db, person_ids=[p.id]) if changed else 0
    return out
