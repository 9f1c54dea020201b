"""``bccd quarantine list|release`` — copies kept for review (SPEC §4.4).

``release ID`` files one held copy through the normal filing path now (an operator's
override: the sender need not be a confirmed address) and prints the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bccd import accounts
from bccd.cli.context import Context
from bccd.errors import BccdError, NotFound
from bccd.ingest import holding
from bccd.ingest.outcome import Disposition
from bccd.ingest.pipeline import build_pipeline
from bccd.quarantine import copies


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("quarantine", help="copies kept in quarantine")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = s.add_parser("list", parents=[common], help="a user's quarantined copies")
    ls.add_argument("email")
    ls.add_argument("--held", action="store_true", help="only copies not released yet")
    ls.set_defaults(handler=list_)
    r = s.add_parser("release", parents=[common], help="file a quarantined copy now")
    r.add_argument("id", type=int)
    r.set_defaults(handler=release)


def list_(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        user = accounts.get_user(s, args.email)
        rows = copies.list_copies(s, user.id)
    return [r.as_dict() for r in rows if not (args.held and r.released_at)]


def release(ctx: Context, args: argparse.Namespace) -> Any:
    settings = ctx.settings
    db = ctx.database()
    pipeline = build_pipeline(settings, db, authenticate=False)
    out = asyncio.run(holding.release_one(pipeline, args.id))
    if out is None:
        raise NotFound(f"no quarantined copy {args.id}")
    if out.disposition in (Disposition.REFUSED, Disposition.TEMPFAIL):
        raise BccdError(f"copy {args.id} was not filed: {out.reason}")
    return {"id": args.id, "outcome": out.disposition.value, "reason": out.reason,
            "message_id": out.message_id, "thread_id": out.thread_id}
