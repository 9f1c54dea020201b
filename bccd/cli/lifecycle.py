"""``bccd erase ADDRESS``, ``bccd backup PATH``, ``bccd restore PATH`` — parsing and
output only; the rules are ``bccd.lifecycle.erase`` and ``bccd.lifecycle.backup``.

``restore`` reads the configuration without preparing the data directory (no database
is opened or migrated and no secret key generated there), because it must find that
directory empty and fill it from the backup.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bccd.cli.context import Context
from bccd.config import load_settings
from bccd.lifecycle import backup as backups
from bccd.lifecycle import erase as erasure
from bccd.store.blobs import Blobs


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    e = sub.add_parser("erase", parents=[common],
                       help="erase every message, person and record holding an address")
    e.add_argument("address")
    scope = e.add_mutually_exclusive_group(required=True)
    scope.add_argument("--company", metavar="SLUG", help="erase within this company")
    scope.add_argument("--all-companies", action="store_true", help="erase in every company")
    e.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    e.set_defaults(handler=erase)
    b = sub.add_parser("backup", parents=[common],
                       help="snapshot the database, blobs and key into a new directory")
    b.add_argument("path", type=Path)
    b.set_defaults(handler=backup)
    r = sub.add_parser("restore", parents=[common],
                       help="restore a backup into an empty data directory")
    r.add_argument("path", type=Path)
    r.set_defaults(handler=restore)


def erase(ctx: Context, args: argparse.Namespace) -> Any:
    settings = ctx.settings
    return erasure.erase_address(
        ctx.database(), Blobs.of(settings), args.address, company=args.company,
        all_companies=args.all_companies, grace=settings.retention.blob_grace,
        dry_run=args.dry_run,
    ).as_dict()


def backup(ctx: Context, args: argparse.Namespace) -> Any:
    return backups.backup(ctx.settings, args.path)


def restore(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.log import configure_logging

    settings = load_settings(ctx.config_path)
    configure_logging(settings.log, stream="stderr")
    return backups.restore(settings, args.path)
