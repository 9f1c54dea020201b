"""``bccd quickstart`` — from an empty installation to a filed copy on the Mail page.

Creates a company and its first user (an admin) unless they exist, and prints what a
newcomer needs next: the user's Smart Bcc address, a sign-in link for the Mail page
(single use, valid ``signin.link_ttl``, the same kind of link ``/mail/login`` emails —
printed here because a new installation has no mail relay yet) and a ready ``swaks``
command that sends a first copy. Run again, it creates nothing and prints a fresh link.

Decisions: the defaults (company "Example", user ``you@example.test``) are reserved
example names (RFC 2606), so nothing is ever mailed to a real person; the command never
changes an existing user (it only reads them), so it is safe on a live installation.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from sqlalchemy import select

from bccd import accounts
from bccd.cli.context import Context
from bccd.config import Settings
from bccd.errors import Invalid
from bccd.store.models import Company, User
from bccd.web.signin_links import new_link

DEFAULT_COMPANY = "Example"
DEFAULT_EMAIL = "you@example.test"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("quickstart", parents=[common],
                       help="create a first company and user; print a sign-in link and what to try")
    p.add_argument("--company", default=DEFAULT_COMPANY, metavar="NAME",
                   help=f"the company's name (default {DEFAULT_COMPANY!r})")
    p.add_argument("--email", default=DEFAULT_EMAIL, help=f"your login address (default {DEFAULT_EMAIL})")
    p.add_argument("--name", default="You", help="your name")
    p.set_defaults(handler=quickstart)


def quickstart(ctx: Context, args: argparse.Namespace) -> Any:
    settings = ctx.settings
    with ctx.database().transaction() as s:
        slug = accounts.slugify(args.company)
        company = s.scalar(select(Company).where(Company.slug == slug))
        created = []
        if company is None:
            company = accounts.create_company(s, args.company)
            created.append("company")
        email = accounts.parse_email_arg(args.email)
        user = s.scalar(select(User).where(User.email == email))
        token = None
        if user is None:
            new = accounts.create_user(s, email, company, name=args.name, admin=True)
            user, token = new.user, new.api_token
            created.append("user")
        elif user.company_id != company.id:
            raise Invalid(f"{email} is a user of another company; give its --company")
        if user.disabled:
            raise Invalid(f"{email} is disabled; `bccd user enable {email}` first")
        url, expires = new_link(s, settings, user)
        bcc = accounts.bcc_address(user, settings.smtp.bcc_domain)
        out = {"company": company.slug, "email": user.email, "bcc_address": bcc,
               "signin_url": url, "signin_expires_at": expires.isoformat(),
               "mail_page": settings.http.base_url.rstrip("/") + "/mail",
               "try": _swaks(settings, user.email, user.name or args.name, bcc),
               "created": created}
        if token is not None:
            out["api_token"] = token  # shown once, as by ``user create``
    if args.json:
        return out
    return _text(out, settings)


def _swaks(settings: Settings, email: str, name: str, bcc: str) -> str:
    host, port = settings.smtp.host_port
    return " ".join([
        "swaks", "--server", f"{host}:{port}", "--from", email, "--to", shlex.quote(bcc),
        "--header", shlex.quote(f"From: {name} <{email}>"),
        "--header", shlex.quote("To: Bob <bob@client.example>"),
        "--header", shlex.quote("Subject: Hello Bob"),
        "--body", shlex.quote("Hi Bob, this is my first copy for the CRM.")])


def _text(out: dict[str, Any], settings: Settings) -> str:
    made = " and ".join(out["created"])
    lines = [f"Created the {made}." if made else "Nothing to create: the company and user exist.",
             f"Company           {out['company']}",
             f"Your login        {out['email']}",
             f"Smart Bcc address {out['bcc_address']}   (put it in Bcc of mail you send)"]
    if "api_token" in out:
        lines.append(f"API token         {out['api_token']}   (shown once)")
    lines += ["",
              "Sign in to the Mail page (the link works once, for "
              f"{settings.signin.link_ttl // 60} minutes; `bccd quickstart` again for another):",
              f"  {out['signin_url']}",
              "",
              "Send a first copy (a laptop has no DKIM keys: run bccd with BCCD_AUTH__MODE=off"
              " to try this):",
              f"  {out['try']}",
              "",
              f"Then look at {out['mail_page']}."]
    return "\n".join(lines)
