"""``bccd mail list|show|link|unlink|set|archive|delete`` and ``bccd rejections list``.

``mail list`` filters by entity (``--person``, ``--organization``, ``--deal``, ``--lead``,
``--project``: that entity's timeline, SPEC §5.14), ``--needs-linking`` (SPEC §5.12) and
``--category`` (SPEC §5.10: a thread's category is the most human of its messages').

Without ``--as EMAIL`` a command acts as the operator (any thread, within its company's
boundaries); with it, as that user: the thread must be visible to them, a linked entity
too, and ``set``/``archive``/``delete`` are the owner's alone. The rules live in
``bccd.linking.manual`` and ``bccd.linking.visibility``; this module parses and renders.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from bccd import accounts
from bccd.cli.context import Context
from bccd.errors import Invalid
from bccd.linking import categories, linkstate, manual
from bccd.mailstore import actions, read
from bccd.store.models import Rejection, User

_ENTITY_FLAGS = ("person", "organization", "deal", "lead", "project")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("mail", help="the mail store")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = s.add_parser("list", parents=[common], help="threads a user can see")
    ls.add_argument("email")
    for kind in ("person", "organization", "deal", "lead", "project"):
        ls.add_argument(f"--{kind}", type=int, metavar="ID",
                        help=f"the {kind}'s timeline (a message several users filed, once)")
    ls.add_argument("--needs-linking", action="store_true",
                    help="only threads whose suggestions await a choice (link_state needs_choice)")
    ls.add_argument("--category", metavar="C", action="append",
                    help="only threads of this category (person, internal, bounce, auto_reply, "
                         "bulk); several: repeat it or separate by commas")
    ls.add_argument("--limit", type=int, metavar="N", help="at most N threads, newest first")
    ls.set_defaults(handler=list_)
    sh = s.add_parser("show", parents=[common], help="one thread with its messages")
    sh.add_argument("thread_id", type=int)
    _as(sh)
    sh.set_defaults(handler=show)
    for name, handler, help_ in (("link", link, "link a thread to a person, deal, lead or project"),
                                 ("unlink", unlink, "remove one link of a thread")):
        lk = s.add_parser(name, parents=[common], help=help_)
        lk.add_argument("thread_id", type=int)
        group = lk.add_mutually_exclusive_group(required=True)
        for kind in _ENTITY_FLAGS:
            group.add_argument(f"--{kind}", type=int, metavar="ID")
        _as(lk)
        lk.set_defaults(handler=handler)
    st = s.add_parser("set", parents=[common], help="change a thread's visibility")
    st.add_argument("thread_id", type=int)
    st.add_argument("--visibility", required=True, choices=manual.VISIBILITIES)
    _as(st)
    st.set_defaults(handler=set_)
    ar = s.add_parser("archive", parents=[common], help="archive a thread")
    ar.add_argument("thread_id", type=int)
    _as(ar)
    ar.set_defaults(handler=archive)
    de = s.add_parser("delete", parents=[common], help="delete a thread and its messages")
    de.add_argument("thread_id", type=int)
    _as(de)
    de.set_defaults(handler=delete)
    r = sub.add_parser("rejections", help="refused copies")
    rs = r.add_subparsers(dest="action", metavar="ACTION", required=True)
    rl = rs.add_parser("list", parents=[common], help="recent refused copies for a user")
    rl.add_argument("email")
    rl.add_argument("--limit", type=int, default=100)
    rl.set_defaults(handler=rejections)


def _as(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as", dest="as_user", metavar="EMAIL",
                        help="act as this user (visibility and ownership apply)")


def _actor(s: Any, args: argparse.Namespace) -> User | None:
    return accounts.get_user(s, args.as_user) if args.as_user else None


def _entity(args: argparse.Namespace) -> tuple[str, int]:
    for kind in _ENTITY_FLAGS:
        value = getattr(args, kind, None)
        if value is not None:
            return kind, int(value)
    raise AssertionError("argparse requires one entity flag")


def list_(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        user = accounts.get_user(s, args.email)
        filters = read.Filters(person=args.person, organization=args.organization,
                               deal=args.deal, lead=args.lead, project=args.project,
                               link_state=linkstate.NEEDS_CHOICE if args.needs_linking else None,
                               category=_categories(args.category))
        page = read.list_threads(s, user, filters, limit=args.limit, names=False)
        return page["threads"]


def _categories(values: list[str] | None) -> tuple[str, ...]:
    try:
        return categories.parse_list(",".join(values or ()))
    except ValueError as exc:
        raise Invalid(f"--category: {exc}") from None


def show(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        actor = _actor(s, args)
        return read.show_thread(s, manual.get_thread(s, args.thread_id, actor), actor)


def link(ctx: Context, args: argparse.Namespace) -> Any:
    kind, entity_id = _entity(args)
    with ctx.database().transaction() as s:
        return actions.link(s, _actor(s, args), args.thread_id, kind, entity_id)


def unlink(ctx: Context, args: argparse.Namespace) -> Any:
    kind, entity_id = _entity(args)
    with ctx.database().transaction() as s:
        return actions.unlink(s, _actor(s, args), args.thread_id, kind, entity_id)


def set_(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().transaction() as s:
        return actions.set_visibility(s, _actor(s, args), args.thread_id, args.visibility)


def archive(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().transaction() as s:
        return actions.archive(s, _actor(s, args), args.thread_id)


def delete(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().transaction() as s:
        return actions.delete(s, _actor(s, args), args.thread_id)


def rejections(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        user: User = accounts.get_user(s, args.email)
        rows = s.scalars(
            select(Rejection).where(Rejection.user_id == user.id)
            .order_by(Rejection.id.desc()).limit(args.limit)
        )
        return [{"id": r.id, "at": r.created_at.isoformat(), "recipient": r.recipient,
                 "from": r.from_header, "mail_from": r.mail_from, "client_ip": r.client_ip,
                 "message_id": r.message_id, "code": r.code, "reason": r.reason,
                 "auth": r.auth} for r in rows]
