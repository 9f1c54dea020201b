"""``bccd send`` and ``bccd template list|add|remove`` — mail written in bccd (SPEC §8, §12).

Parsing and output only; the rules are ``bccd.compose``. ``send`` sends as the user
through their own mailbox, exactly as ``POST /api/v1/messages`` does, and prints
``{id, message_id, thread_id, status}``: ``sent`` once the submission server accepted it,
``queued`` when it met a temporary failure (the outbox of ``bccd serve`` retries it). A
permanent refusal, a mailbox that cannot send or bad input is a one-line error (exit 1).
The body comes from a file (``--text-file``, ``--html-file``; ``-`` is standard input) or
a template (``--template``, filled with the ``--deal``/``--lead``/``--project``/``--person``
it is written from); ``--attach`` files go as attachments.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import sys
from pathlib import Path
from typing import Any

from bccd import accounts
from bccd.cli.context import Context
from bccd.compose import templates
from bccd.compose.mime import Part, attachment_allowance
from bccd.compose.prepare import SendRequest
from bccd.compose.send import Sender
from bccd.errors import BccdError, Invalid
from bccd.ingest.pipeline import build_pipeline


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("send", parents=[common], help="send mail as a user, through their mailbox")
    p.add_argument("email", help="the user who sends")
    p.add_argument("--to", action="append", required=True, metavar="ADDR",
                   help="a recipient (repeat for more)")
    p.add_argument("--cc", action="append", default=[], metavar="ADDR")
    p.add_argument("--bcc", action="append", default=[], metavar="ADDR")
    p.add_argument("--subject", metavar="S")
    body = p.add_mutually_exclusive_group(required=True)
    body.add_argument("--text-file", metavar="F", help="plain-text body (- for stdin)")
    body.add_argument("--html-file", metavar="F", help="HTML body (- for stdin)")
    body.add_argument("--template", type=int, metavar="ID", help="a template (template list)")
    entity = p.add_mutually_exclusive_group()
    for kind in ("deal", "lead", "project", "person"):
        entity.add_argument(f"--{kind}", type=int, metavar="ID",
                            help=f"the {kind} it is written from (linked, fills smart fields)")
    p.add_argument("--reply-to", metavar="MESSAGE_ID",
                   help="bccd's message id or the RFC Message-ID replied to")
    p.add_argument("--forward", metavar="MESSAGE_ID", help="the message forwarded")
    p.add_argument("--attach", action="append", default=[], metavar="PATH")
    p.add_argument("--mailbox", type=int, metavar="ID", help="the mailbox that sends (imap list)")
    p.add_argument("--no-signature", action="store_true", help="leave the signature out")
    p.add_argument("--track-opens", choices=["on", "off"],
                   help="track opens of this message (default: the user's setting; HTML only)")
    p.add_argument("--track-clicks", choices=["on", "off"],
                   help="track clicks of its links (default: the user's setting; HTML only)")
    p.set_defaults(handler=send)

    t = sub.add_parser("template", help="mail templates with smart fields")
    s = t.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = s.add_parser("list", parents=[common], help="a user's templates and the shared ones")
    ls.add_argument("email")
    ls.set_defaults(handler=template_list)
    a = s.add_parser("add", parents=[common], help="add a template")
    a.add_argument("email", help="its owner")
    a.add_argument("--name", required=True)
    a.add_argument("--subject", default="", metavar="S")
    a.add_argument("--html-file", required=True, metavar="F", help="the body (- for stdin)")
    a.add_argument("--shared", action="store_true", help="for the whole company (admins only)")
    a.set_defaults(handler=template_add)
    r = s.add_parser("remove", parents=[common], help="remove a template")
    r.add_argument("id", type=int)
    r.set_defaults(handler=template_remove)


def _read(path: str, what: str) -> str:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        return data.decode("utf-8")
    except OSError as exc:
        raise Invalid(f"{what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Invalid(f"{what} {path}: not UTF-8 text") from None


def _attachments(paths: list[str], max_message_size: int) -> tuple[Part, ...]:
    limit = attachment_allowance(max_message_size)
    out: list[Part] = []
    total = 0
    for path in paths:
        p = Path(path)
        try:
            size = p.stat().st_size
            total += size
            if total > limit:
                raise Invalid(f"--attach {path}: the attachments come to more than "
                              f"{limit / 1024 / 1024:.1f} MiB, the most a message can carry")
            data = p.read_bytes()
        except OSError as exc:
            raise Invalid(f"--attach {path}: {exc.strerror or exc}") from None
        ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        out.append(Part(p.name, ctype, data))
    return tuple(out)


def send(ctx: Context, args: argparse.Namespace) -> Any:
    db = ctx.database()
    with db.read() as s:
        user = accounts.get_user(s, args.email)
        user_id = user.id
    req = SendRequest(
        user_id=user_id, to=tuple(args.to), cc=tuple(args.cc), bcc=tuple(args.bcc),
        subject=args.subject,
        html=_read(args.html_file, "--html-file") if args.html_file else None,
        text=_read(args.text_file, "--text-file") if args.text_file else None,
        template_id=args.template, reply_to=args.reply_to, forward_of=args.forward,
        deal_id=args.deal, lead_id=args.lead, project_id=args.project, person_id=args.person,
        attachments=_attachments(args.attach, ctx.settings.smtp.max_message_size),
        signature=not args.no_signature, from_mailbox=args.mailbox,
        track_opens=None if args.track_opens is None else args.track_opens == "on",
        track_clicks=None if args.track_clicks is None else args.track_clicks == "on")

    async def run() -> dict[str, Any]:
        sender = Sender(ctx.settings, db, build_pipeline(ctx.settings, db, authenticate=False))
        answer = await sender.send(req)
        if answer.status_code >= 400:
            raise BccdError(str(answer.body.get("detail", "refused")))
        return {k: answer.body.get(k) for k in ("id", "message_id", "thread_id", "status",
                                                  "refused", "reason") if k in answer.body}

    return asyncio.run(run())


def template_list(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().read() as s:
        rows = templates.list_for(s, accounts.get_user(s, args.email))
    return [{k: v for k, v in r.items() if k != "html"} for r in rows]


def template_add(ctx: Context, args: argparse.Namespace) -> Any:
    html = _read(args.html_file, "--html-file")
    with ctx.database().transaction() as s:
        user = accounts.get_user(s, args.email)
        return templates.shape(templates.add(s, user, name=args.name, subject=args.subject,
                                             html=html, shared=args.shared), user.email)


def template_remove(ctx: Context, args: argparse.Namespace) -> Any:
    with ctx.database().transaction() as s:
        templates.remove(s, None, args.id)
    return {"id": args.id, "removed": True}
