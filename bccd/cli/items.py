"""``bccd deal|lead|project create|list|set``.

Creating an item or changing its status re-applies the linking rule (SPEC §5.6/§5.7) to
the threads of its person right after the commit: ``relinked_threads`` counts the
threads whose item link or suggestions changed.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from bccd import accounts, crm
from bccd.cli.context import Context
from bccd.mailstore import shapes as render
from bccd.store.models import Company, Item


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    for kind in crm.ITEM_KINDS:
        p = sub.add_parser(kind, help=f"CRM {kind}s")
        s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
        c = s.add_parser("create", parents=[common], help=f"create a {kind}")
        c.add_argument("--company", required=True, metavar="SLUG")
        c.add_argument("--title", required=True)
        c.add_argument("--person", type=int, metavar="ID")
        if kind == "project":
            c.add_argument("--deal", type=int, metavar="ID")
        c.add_argument("--status", default="open", choices=crm.ITEM_STATUSES[kind])
        c.add_argument("--owner", metavar="EMAIL", help=f"the user who owns the {kind}")
        c.add_argument("--visible-to", choices=crm.VISIBLE_TO, default="company")
        if kind == "deal":
            c.add_argument("--value", metavar="V", help='as the CRM shows it, e.g. "12,000 EUR"')
        c.set_defaults(handler=create, kind=kind)
        ls = s.add_parser("list", parents=[common], help=f"list a company's {kind}s")
        ls.add_argument("--company", required=True, metavar="SLUG")
        ls.set_defaults(handler=list_, kind=kind)
        st = s.add_parser("set", parents=[common], help=f"change a {kind}'s status")
        st.add_argument("id", type=int)
        st.add_argument("--status", required=True, choices=crm.ITEM_STATUSES[kind])
        st.set_defaults(handler=set_, kind=kind)


def create(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.linking import retro

    db = ctx.database()
    with db.transaction() as s:
        company = accounts.get_company(s, args.company)
        owner_id = crm.owner_in_company(s, company, args.owner) if args.owner else None
        item = crm.create_item(
            s, company, args.kind, title=args.title, person_id=args.person,
            deal_id=getattr(args, "deal", None), status=args.status, owner_id=owner_id,
            visible_to=args.visible_to,
        )
        item.value = (getattr(args, "value", None) or "").strip()[:64] or None
        out = render.item(item, company.slug, ctx.settings)
    out["relinked_threads"] = retro.relink_for_item(db, item.id)
    return out


def list_(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        company = accounts.get_company(s, args.company)
        q = (select(Item).where(Item.company_id == company.id, Item.kind == args.kind)
             .order_by(Item.id))
        return [render.item(i, company.slug, ctx.settings) for i in s.scalars(q)]


def set_(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.linking import retro

    db = ctx.database()
    with db.transaction() as s:
        item = crm.get_item(s, args.kind, args.id)
        crm.set_item_status(item, args.status)
        company = s.get(Company, item.company_id)
        assert company is not None
        out = render.item(item, company.slug, ctx.settings)
    out["relinked_threads"] = retro.relink_for_item(db, item.id)
    return out
