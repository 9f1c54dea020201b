"""``bccd imap add|set|remove|list|sync`` — mailbox sync accounts (SPEC §7, §8).

Parsing and output only; the rules live in :mod:`bccd.imap`. Secrets are never taken on
the command line (they would land in shell history and ``ps``): ``--password-env VAR``
and ``--oauth2-…-env VAR`` name environment variables that hold them.

``imap sync --once`` runs one pass and prints a summary per account (with a ``rich``
progress bar when stdout is a terminal and ``--json`` is not given); any failed account
makes the exit status 1 with one line per failure on stderr. Without ``--once`` it keeps
polling in the foreground until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from bccd.cli.context import Context
from bccd.crypto import SecretBox
from bccd.errors import Invalid
from bccd.imap.sync import IngestSink, Progress
from bccd.mailboxes import accounts
from bccd.mailboxes.accounts import Auth, OAuth2Auth, PasswordAuth


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("imap", help="mailbox sync accounts")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    a = s.add_parser("add", parents=[common], help="add a mailbox to sync for a user")
    a.add_argument("email", help="the bccd user the mailbox belongs to")
    a.add_argument("--host", required=True)
    a.add_argument("--port", type=int, help="default 993 (ssl) or 143 (starttls)")
    a.add_argument("--security", choices=accounts.SECURITY, default="ssl")
    a.add_argument("--username", required=True, help="IMAP login name")
    how = a.add_mutually_exclusive_group(required=True)
    how.add_argument("--password-env", metavar="VAR", help="environment variable holding the password")
    how.add_argument("--oauth2", action="store_true", help="OAuth 2.0 with a refresh token")
    a.add_argument("--oauth2-token-url", metavar="URL", help="token endpoint (https)")
    a.add_argument("--oauth2-client-id", metavar="ID")
    a.add_argument("--oauth2-client-secret-env", metavar="VAR", help="env var with the client secret")
    a.add_argument("--oauth2-refresh-token-env", metavar="VAR", help="env var with the refresh token")
    a.add_argument(
        "--oauth2-mechanism",
        choices=("xoauth2", "oauthbearer"),
        default="xoauth2",
        help="SASL mechanism (default xoauth2)",
    )
    a.add_argument("--ca-file", metavar="PATH", help="trust only this CA for the server certificate")
    which = a.add_mutually_exclusive_group()
    which.add_argument("--folders", metavar="A,B", help="folders (Gmail: labels) to sync")
    which.add_argument("--all", action="store_true", help="all mail (the default)")
    a.add_argument(
        "--on-archive",
        choices=accounts.ON_ARCHIVE,
        default="none",
        help="what archiving a thread in bccd does on the server",
    )
    a.add_argument("--scope", choices=accounts.SCOPES, default="all",
                   help="all mail, or only mail with a counterpart who is a known person")
    _submission_args(a)
    a.add_argument("--authserv-id", action="append", metavar="ID", dest="authserv_ids",
                   help="the provider's own authserv-id (repeatable): its Authentication-Results"
                        " with DMARC pass make mail from the user outside Sent outgoing")
    a.set_defaults(handler=add)

    st = s.add_parser("set", parents=[common], help="change a mailbox's settings")
    st.add_argument("id", type=int, help="the mailbox (imap list)")
    which = st.add_mutually_exclusive_group()
    which.add_argument("--folders", metavar="A,B", help="folders (Gmail: labels) to sync")
    which.add_argument("--all", action="store_true", help="all mail")
    st.add_argument("--scope", choices=accounts.SCOPES)
    st.add_argument("--on-archive", choices=accounts.ON_ARCHIVE)
    _submission_args(st)
    st.add_argument("--no-smtp", action="store_true",
                    help="remove the submission settings (no sending through this mailbox)")
    ids = st.add_mutually_exclusive_group()
    ids.add_argument("--authserv-id", action="append", metavar="ID", dest="authserv_ids",
                     help="the provider's own authserv-ids (repeatable; replaces the list)")
    ids.add_argument("--no-authserv-id", action="store_true",
                     help="trust no Authentication-Results in this mailbox")
    st.set_defaults(handler=set_)

    rm = s.add_parser("remove", parents=[common], help="remove a mailbox (its mail stays)")
    rm.add_argument("id", type=int, help="the mailbox (imap list)")
    rm.add_argument("--delete-mail", action="store_true",
                    help="also delete mail that came only from this mailbox")
    rm.set_defaults(handler=remove)

    ls = s.add_parser("list", parents=[common], help="list accounts with their state")
    ls.add_argument("--user", metavar="EMAIL", help="only this user's accounts")
    ls.set_defaults(handler=list_)

    sy = s.add_parser("sync", parents=[common], help="sync mailboxes now")
    sy.add_argument("--account", type=int, metavar="ID", help="only this account")
    sy.add_argument("--once", action="store_true", help="one pass, then exit")
    sy.set_defaults(handler=sync)


def _submission_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smtp-host", metavar="H", help="submission server for sending as the user")
    p.add_argument("--smtp-port", type=int, metavar="P", help="default 465 (ssl) or 587 (starttls)")
    p.add_argument("--smtp-security", choices=accounts.SECURITY, help="default starttls")


def _env(var: str | None, what: str) -> str:
    if not var:
        raise Invalid(f"{what} is required")
    value = os.environ.get(var, "")
    if not value:
        raise Invalid(f"environment variable {var} ({what}) is not set or empty")
    return value


def _auth(args: argparse.Namespace) -> Auth:
    if not args.oauth2:
        return PasswordAuth(password=_env(args.password_env, "--password-env"))
    if not args.oauth2_token_url or not args.oauth2_client_id:
        raise Invalid("--oauth2 needs --oauth2-token-url and --oauth2-client-id")
    secret = (
        _env(args.oauth2_client_secret_env, "--oauth2-client-secret-env")
        if (args.oauth2_client_secret_env)
        else ""
    )
    return OAuth2Auth(
        token_url=args.oauth2_token_url,
        client_id=args.oauth2_client_id,
        client_secret=secret,
        refresh_token=_env(args.oauth2_refresh_token_env, "--oauth2-refresh-token-env"),
        mechanism=args.oauth2_mechanism.upper(),
    )


def add(ctx: Context, args: argparse.Namespace) -> Any:
    auth = _auth(args)
    box = SecretBox(ctx.settings.secret_keys)
    with ctx.database().transaction() as s:
        row = accounts.add_account(
            s,
            box,
            user_email=args.email,
            host=args.host,
            port=args.port,
            security=args.security,
            username=args.username,
            auth=auth,
            ca_file=args.ca_file,
            folders=[] if args.all else accounts.parse_folders(args.folders),
            on_archive=args.on_archive,
            scope=args.scope,
            smtp=accounts.submission(args.smtp_host, args.smtp_port, args.smtp_security),
            authserv_ids=args.authserv_ids,
        )
        return {"id": row.id}


def set_(ctx: Context, args: argparse.Namespace) -> Any:
    changes: dict[str, Any] = {}
    if args.all or args.folders is not None:
        changes["folders"] = [] if args.all else accounts.parse_folders(args.folders)
    if args.scope is not None:
        changes["scope"] = args.scope
    if args.on_archive is not None:
        changes["on_archive"] = args.on_archive
    if args.no_smtp:
        if args.smtp_host or args.smtp_port is not None or args.smtp_security:
            raise Invalid("--no-smtp cannot be combined with --smtp-host/--smtp-port/--smtp-security")
        changes["smtp"] = None
    elif args.smtp_host or args.smtp_port is not None or args.smtp_security:
        changes["smtp"] = accounts.submission(args.smtp_host, args.smtp_port, args.smtp_security)
    if args.no_authserv_id:
        changes["authserv_ids"] = []
    elif args.authserv_ids:
        changes["authserv_ids"] = args.authserv_ids
    if not changes:
        raise Invalid("nothing to change: give --folders/--all, --scope, --on-archive, --smtp-*"
                      " or --authserv-id")
    with ctx.database().transaction() as s:
        row = accounts.update_account(s, args.id, **changes)
        return accounts.show_account(s, row)


def remove(ctx: Context, args: argparse.Namespace) -> Any:
    """A running ``bccd serve`` notices within seconds: its sync of this mailbox ends at
    the next group of messages (the row is gone) and the account is not started again."""
    from bccd.mailboxes.removal import remove_account

    with ctx.database().transaction() as s:
        return remove_account(s, args.id, delete_mail=args.delete_mail)


def list_(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        return accounts.list_accounts(s, args.user)


def _sink(ctx: Context) -> IngestSink:
    from bccd.ingest.pipeline import build_pipeline

    # IMAP copies are not authenticated (they come from the user's own mailbox)
    return build_pipeline(ctx.settings, ctx.database(), authenticate=False)


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    tasks: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:

        def update(folder: str, done: int, total: int) -> None:
            if folder not in tasks:
                if not total:  # nothing new in this folder: no bar
                    return
                tasks[folder] = bar.add_task(folder, total=total)
            bar.update(tasks[folder], completed=done, total=total)

        yield update


def sync(ctx: Context, args: argparse.Namespace) -> Any:
    from bccd.imap import poller

    db = ctx.database()
    ids = None
    if args.account is not None:
        with db.read() as s:
            ids = [accounts.get_account(s, args.account).id]
    sink = _sink(ctx)
    if not args.once:
        return _run_forever(ctx, sink)
    show = sys.stdout.isatty() and not args.json
    with _progress(show) as progress:
        results = asyncio.run(poller.sync_once(ctx.settings, db, sink, account_ids=ids, progress=progress))
    failed = [r for r in results if r.error]
    for r in failed:
        sys.stderr.write(f"bccd: error: account {r.account_id}: {r.error}\n")
    if failed:
        args.exit_code = 1
    return [r.as_dict() if args.json else _brief(r.as_dict()) for r in results]


def _brief(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in ("account", "ok", "stored", "duplicates", "error")}


def _run_forever(ctx: Context, sink: IngestSink) -> Any:
    from bccd.imap.poller import run_poller

    async def main() -> None:
        stop = asyncio.Event()
        try:
            await run_poller(ctx.settings, ctx.database(), sink, stop)
        finally:
            stop.set()

    asyncio.run(main())  # Ctrl-C → KeyboardInterrupt → exit 130 via the CLI frame
    return None
