"""``bccd company create|set|list|delete``."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from bccd import accounts
from bccd.cli.context import Context
from bccd.lifecycle import offboard
from bccd.mailstore import shapes as render
from bccd.store.blobs import Blobs
from bccd.store.models import Company
from bccd.tracking import policy


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("company", help="companies (tenants)")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = s.add_parser("create", parents=[common], help="create a company")
    c.add_argument("name")
    c.add_argument("--slug")
    c.set_defaults(handler=create)
    st = s.add_parser("set", parents=[common], help="change a company's settings (each optional)")
    st.add_argument("slug")
    st.add_argument("--create-unknown-contacts", choices=["on", "off"],
                    help="make persons of unknown counterparts of Smart Bcc copies")
    st.add_argument("--tracking", choices=list(policy.POLICIES),
                    help="open and click tracking of mail sent from bccd (SPEC §13); off "
                         "also stops recording hits on mail already sent")
    st.add_argument("--domains", metavar="D,…",
                    help="the company's own mail domains (internal mail); '' = the default, "
                         "its users' login domains")
    st.add_argument("--automated-mail", choices=list(accounts.AUTOMATED_MAIL),
                    help="auto-replies and bulk mail: stored unlinked (default), stored and "
                         "linked like any mail, or dropped")
    st.add_argument("--internal-mail", choices=list(accounts.INTERNAL_MAIL),
                    help="mail among the company's own people: stored (default) or dropped")
    st.set_defaults(handler=set_)
    ls = s.add_parser("list", parents=[common], help="list companies")
    ls.set_defaults(handler=list_)
    de = s.add_parser("delete", parents=[common],
                      help="disable a company's users and delete everything it holds")
    de.add_argument("slug")
    de.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    de.set_defaults(handler=delete)


def create(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().transaction() as s:
        c = accounts.create_company(s, args.name, args.slug)
        return {"id": c.id, "slug": c.slug, "name": c.name}


def set_(ctx: Context, args: argparse.Namespace) -> Any:
    """Every flag optional (SPEC §8): only those given change; the company's settings
    are shown."""
    with ctx.database().transaction() as s:
        c = accounts.get_company(s, args.slug)
        accounts.set_company(
            s, c, create_unknown_contacts=(None if args.create_unknown_contacts is None
                                           else args.create_unknown_contacts == "on"),
            domains=None if args.domains is None else args.domains.split(","),
            automated_mail=args.automated_mail, internal_mail=args.internal_mail)
        if args.tracking is not None:
            policy.set_company(s, c, args.tracking)
        s.flush()
        return render.company(c, s)


def list_(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        return [render.company(c, s) for c in s.scalars(select(Company).order_by(Company.id))]


def delete(ctx: Context, args: argparse.Namespace) -> Any:
    return offboard.delete_company(ctx.database(), Blobs.of(ctx.settings), args.slug,
                                   grace=ctx.settings.retention.blob_grace,
                                   dry_run=args.dry_run).as_dict()
