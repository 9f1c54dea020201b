"""``bccd db upgrade``."""

from __future__ import annotations

import argparse
from typing import Any

from bccd.cli.context import Context


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("db", help="database schema")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    u = s.add_parser("upgrade", parents=[common], help="apply migrations")
    u.set_defaults(handler=upgrade)


def upgrade(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.store.migrate import upgrade as do_upgrade

    do_upgrade(ctx.settings.database_url)
    return {"upgraded": True}
