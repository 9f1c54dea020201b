"""``bccd blobs migrate --to database|fs`` and ``bccd blobs status`` — parsing and output
only; the rules are ``bccd.lifecycle.blobmove``."""

from __future__ import annotations

import argparse
from typing import Any

from bccd.cli.context import Context
from bccd.lifecycle import blobmove
from bccd.store.blobs import Blobs


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("blobs", help="attachment blobs: where they are, moving them")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    m = s.add_parser("migrate", parents=[common],
                     help="move the blobs into the database or the file store (safe while "
                          "bccd serves; run it again to finish after an interruption)")
    m.add_argument("--to", required=True, choices=("database", "fs"))
    m.set_defaults(handler=migrate)
    st = s.add_parser("status", parents=[common], help="what each store holds")
    st.set_defaults(handler=status)


def migrate(ctx: Context, args: argparse.Namespace) -> Any:
    settings = ctx.settings
    db, blobs = ctx.database(), Blobs.of(settings)
    if args.to == "database":
        report = blobmove.to_database(db, blobs, grace=settings.retention.blob_grace)
    else:
        report = blobmove.to_files(db, blobs)
    out = report.as_dict()
    if args.to != settings.blob_store:
        out["note"] = (f"storage.blobs is {settings.blob_store!r}: new attachments still go "
                       f"there; set storage.blobs = {args.to!r} on every instance")
    return out


def status(ctx: Context, args: argparse.Namespace) -> Any:
    return blobmove.status(ctx.database(), Blobs.of(ctx.settings)).as_dict()
