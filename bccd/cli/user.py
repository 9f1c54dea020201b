"""``bccd user create|list|show|set|rotate-address|disable|enable|delete``.

What only some actions use (offboarding, signatures, link states, blobs) is imported by
the action that uses it, so ``user list`` loads no more than a listing needs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bccd import accounts
from bccd.cli.context import Context
from bccd.errors import Invalid
from bccd.mailstore import shapes as render
from bccd.store.models import User


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("user", help="users and their Smart Bcc addresses")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = s.add_parser("create", parents=[common], help="create a user")
    c.add_argument("email")
    c.add_argument("--company", required=True, metavar="SLUG")
    c.add_argument("--name", default="")
    c.add_argument("--admin", action="store_true")
    c.set_defaults(handler=create)
    ls = s.add_parser("list", parents=[common], help="list users")
    ls.add_argument("--company", metavar="SLUG")
    ls.set_defaults(handler=list_)
    sh = s.add_parser("show", parents=[common], help="show a user")
    sh.add_argument("email")
    sh.set_defaults(handler=show)
    st = s.add_parser("set", parents=[common], help="change a user's settings")
    st.add_argument("email")
    st.add_argument("--sharing", choices=accounts.SHARING)
    st.add_argument("--linking", choices=accounts.LINKING)
    st.add_argument("--email-links", choices=accounts.EMAIL_LINKS)
    st.add_argument("--signature-file", metavar="F",
                    help="HTML signature for mail written in bccd (an empty file: none)")
    st.set_defaults(handler=set_)
    r = s.add_parser("rotate-address", parents=[common], help="new Smart Bcc address")
    r.add_argument("email")
    r.set_defaults(handler=rotate)
    d = s.add_parser("disable", parents=[common], help="disable a user")
    d.add_argument("email")
    d.set_defaults(handler=disable)
    en = s.add_parser("enable", parents=[common],
                      help="undo disable: mail and IMAP sync resume; prints a new API token")
    en.add_argument("email")
    en.set_defaults(handler=enable)
    de = s.add_parser("delete", parents=[common], help="disable a user and delete their mail")
    de.add_argument("email")
    de.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    de.set_defaults(handler=delete)


def create(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().transaction() as s:
        company = accounts.get_company(s, args.company)
        new = accounts.create_user(s, args.email, company, name=args.name, admin=args.admin)
        return {
            "id": new.user.id,
            "email": new.user.email,
            "bcc_address": accounts.bcc_address(new.user, ctx.settings.smtp.bcc_domain),
            "api_token": new.api_token,
        }


def list_(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        q = select(User).order_by(User.id)
        if args.company:
            q = q.where(User.company_id == accounts.get_company(s, args.company).id)
        return [render.user_brief(u, ctx.settings) for u in s.scalars(q)]


def show(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        return render.user_full(s, accounts.get_user(s, args.email), ctx.settings)


def set_(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.compose import signature
    from bccd.linking import linkstate

    with ctx.database().transaction() as s:
        u = accounts.get_user(s, args.email)
        mode = u.linking_mode
        accounts.set_user(s, u, sharing=args.sharing, linking=args.linking, email_links=args.email_links)
        if u.linking_mode != mode:
            linkstate.mode_changed(s, u.id)  # SPEC §5.12: the threads' states follow
        if args.signature_file is not None:
            try:
                html = Path(args.signature_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise Invalid(f"--signature-file {args.signature_file}: {exc}") from None
            signature.set_signature(s, u, html)
        return render.user_full(s, u, ctx.settings)


def rotate(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().transaction() as s:
        u = accounts.get_user(s, args.email)
        accounts.rotate_address(s, u)
        return {"bcc_address": accounts.bcc_address(u, ctx.settings.smtp.bcc_domain)}


def disable(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.lifecycle import offboard

    with ctx.database().transaction() as s:
        return offboard.disable_user(s, accounts.get_user(s, args.email))


def enable(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.lifecycle import offboard

    with ctx.database().transaction() as s:
        return offboard.enable_user(s, accounts.get_user(s, args.email))


def delete(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.lifecycle import offboard
    from bccd.store.blobs import Blobs

    return offboard.delete_user(ctx.database(), Blobs.of(ctx.settings), args.email,
                                grace=ctx.settings.retention.blob_grace,
                                dry_run=args.dry_run).as_dict()
