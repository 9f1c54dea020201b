"""``bccd serve`` — SMTP, HTTP and mailbox sync in one process."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bccd.cli.context import Context


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", help="run SMTP, HTTP and mailbox sync")
    p.set_defaults(handler=serve, json=False)


def serve(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd import service

    db = ctx.database()  # migrates an embedded SQLite database
    asyncio.run(service.run(ctx.settings, db))
    return None
