"""``bccd alt add|resend|list|remove|confirm`` — alternate sender addresses (SPEC §6).

``add`` commits the pending alternate and its confirmation mail in one transaction; the
outbox worker in ``bccd serve`` delivers the mail (so adding works while the relay is
away). The token is only ever in that mail — it is never printed here.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from bccd import accounts
from bccd.cli.context import Context
from bccd.errors import Conflict, Invalid, NotFound

if TYPE_CHECKING:
    from bccd.confirm.flow import Sent

# ``bccd.confirm.flow`` (mail templates) is imported by the handlers that use it: every
# command's start imports this module


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("alt", help="alternate sender addresses of a user")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = s.add_parser("add", parents=[common],
                     help="add an address and email it a confirmation link (again: resend)")
    a.add_argument("email", help="the user's login address")
    a.add_argument("alt", help="the address to add")
    a.set_defaults(handler=add)
    r = s.add_parser("resend", parents=[common], help="email a new confirmation link")
    r.add_argument("email")
    r.add_argument("alt")
    r.set_defaults(handler=resend)
    ls = s.add_parser("list", parents=[common], help="list a user's alternate addresses")
    ls.add_argument("email")
    ls.set_defaults(handler=list_)
    rm = s.add_parser("remove", parents=[common], help="remove an alternate address")
    rm.add_argument("email")
    rm.add_argument("alt")
    rm.set_defaults(handler=remove)
    c = s.add_parser("confirm", parents=[common], help="confirm with the token from the email")
    c.add_argument("token")
    c.set_defaults(handler=confirm)


def _sent(sent: Sent) -> dict[str, Any]:
    return {"email": sent.address, "status": sent.status, "confirmation": "queued",
            "resent": sent.resent, "expires_at": sent.expires_at.isoformat()}


def add(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.confirm import flow

    with ctx.database().transaction() as s:
        user = accounts.get_user(s, args.email)
        return _sent(flow.add(s, ctx.settings, user, args.alt))


def resend(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.confirm import flow

    with ctx.database().transaction() as s:
        user = accounts.get_user(s, args.email)
        return _sent(flow.resend(s, ctx.settings, user, args.alt))


def list_(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.confirm import flow

    with ctx.database().read() as s:
        return flow.list_for(s, accounts.get_user(s, args.email))


def remove(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.confirm import flow

    with ctx.database().transaction() as s:
        user = accounts.get_user(s, args.email)
        flow.remove(s, user, args.alt)
        return {"email": accounts.parse_email_arg(args.alt), "removed": True}


def confirm(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.confirm import flow

    with ctx.database().transaction() as s:
        info = flow.confirm(s, args.token.strip().lower())
    if info.state is flow.TokenState.CONFIRMED:
        return {**info.as_dict(), "status": "confirmed"}
    if info.state is flow.TokenState.USED:
        raise Conflict(f"this token was used already: {info.address} is confirmed")
    if info.state is flow.TokenState.EXPIRED:
        raise Invalid(f"this token expired; send a new one with"
                      f" `bccd alt add {info.user_email} {info.address}`")
    raise NotFound("no such confirmation token (mistyped, replaced by a newer one, or removed)")
