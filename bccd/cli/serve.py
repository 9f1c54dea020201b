"""``bccd serve`` — SMTP, HTTP and mailbox sync in one process, plus ``smtp.workers`` − 1
SMTP worker processes (``bccd.smtp.workers``; ``--smtp-worker`` is how the primary starts
them, not an option for people).

The primary answers SMTP before it loads the rest (``bccd.startup``): this module imports
only the listener up front; the database and ``bccd.service`` (the HTTP app, the ingest
path, the workers) are loaded by ``prepare`` in a worker thread while the listener
answers."""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
from typing import TYPE_CHECKING, Any

from bccd.cli.context import Context

if TYPE_CHECKING:
    from bccd.startup import Run


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", help="run SMTP, HTTP and mailbox sync")
    p.add_argument("--smtp-worker", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--primary-pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--smtp-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=serve, json=False)


def prepare(ctx: Context) -> Run:
    """Blocking, in a worker thread: the database (an embedded SQLite database is
    migrated) and everything the listener does not need, imported."""
    db = ctx.database()
    from bccd import service

    return functools.partial(service.run, ctx.settings, db, config_path=ctx.config_path)


def serve(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.smtp import workers

    if args.smtp_worker:
        workers.die_with_parent(args.primary_pid)
        import structlog

        structlog.contextvars.bind_contextvars(worker=args.smtp_worker)
        db = ctx.database(migrate=False)  # the primary migrated it
        from bccd import service

        asyncio.run(service.run_smtp_worker(ctx.settings, db, args.smtp_worker, args.smtp_fd))
        return None
    settings = ctx.settings
    metrics_dir = None
    if settings.smtp.process_count > 1:
        from bccd import metrics

        metrics_dir = workers.metrics_dir(settings)
        metrics.use_multiprocess(metrics_dir)  # the workers inherit the directory
    try:
        from bccd import startup

        asyncio.run(startup.serve(settings, functools.partial(prepare, ctx)))
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return None
