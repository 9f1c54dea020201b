"""``bccd block add|list|remove EMAIL [PATTERN]`` — a user's blocked addresses and
domains (SPEC §5.2: ``x@y.com`` exactly, ``@y.com`` the domain and its subdomains).
The rules live in ``bccd.linking.blocklist``; this module parses and renders."""

from __future__ import annotations

import argparse
from typing import Any

from bccd import accounts
from bccd.cli.context import Context
from bccd.linking import blocklist


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("block", help="blocked addresses and domains of a user")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = s.add_parser("add", parents=[common], help="block x@y.com, or @y.com with subdomains")
    a.add_argument("email")
    a.add_argument("pattern")
    a.set_defaults(handler=add)
    ls = s.add_parser("list", parents=[common], help="a user's blocked patterns")
    ls.add_argument("email")
    ls.set_defaults(handler=list_)
    r = s.add_parser("remove", parents=[common], help="unblock a pattern")
    r.add_argument("email")
    r.add_argument("pattern")
    r.set_defaults(handler=remove)


def add(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().transaction() as s:
        user = accounts.get_user(s, args.email)
        pattern = blocklist.add(s, user, args.pattern)
        return {"email": user.email, "pattern": pattern, "blocked": True}


def list_(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        return blocklist.listing(s, accounts.get_user(s, args.email))


def remove(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().transaction() as s:
        user = accounts.get_user(s, args.email)
        pattern = blocklist.remove(s, user, args.pattern)
        return {"email": user.email, "pattern": pattern, "blocked": False}
