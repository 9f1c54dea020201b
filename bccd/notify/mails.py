"""The emails bccd sends itself through ``outbound``, built once and handed to the outbox.

``confirmation(settings, …)`` → the mail to an alternate address asking to confirm it
(SPEC §6); ``notice(settings, …)`` → the mail to a user saying copies from an address were
kept in quarantine (SPEC §4.4) — it never carries a confirmation link: confirming is done
from the mailbox of the address itself. Both return an ``OutboundMail``: multipart/alternative
(plain text first, then HTML rendered by Jinja2 with autoescaping), quoted-printable so
the message is 7-bit for any relay, ``Auto-Submitted: auto-generated`` so nobody's
auto-responder answers it. Pure functions: no database, no network.

Headers never carry a name with a control character or a line break: such a name (one
stored before names were checked at the door) is left out and the mail goes to the bare
address; a header that still cannot be built is ``MailBuildError`` (a clear ``422``), not
an unexpected failure.
"""

from __future__ import annotations

import datetime as dt
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, make_msgid
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bccd.addresses import domain_of, name_problem
from bccd.config import Settings
from bccd.errors import Invalid
from bccd.log import get_logger
from bccd.notify.outbound import OutboundMail

TEMPLATES = Path(__file__).resolve().parents[1] / "web" / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                   auto_reload=False)

SENDER_NAME = "Smart Bcc"
log = get_logger("bccd.notify.mails")


class MailBuildError(Invalid):
    """A header of a notification mail could not be built from the stored values."""


def human_duration(seconds: int) -> str:
    """``259200`` → ``3 days``; ``7200`` → ``2 hours``; ``90`` → ``90 seconds``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    if seconds >= 3 * 3600:
        n = round(seconds / 3600)
        return f"about {n} hours"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def copies(n: int) -> str:
    return "a Bcc copy" if n == 1 else f"{n} Bcc copies"


def _mailbox(name: str, addr: str, smtputf8: bool) -> Address | str:
    if name_problem(name) is not None:
        log.warning("mail_name_left_out", address=addr,
                    reason="the name holds control characters or line breaks")
        name = ""
    if not name:
        return Address("", addr_spec=addr) if not smtputf8 else addr
    if not smtputf8:
        return Address(name, addr_spec=addr)
    # headerregistry.Address refuses a non-ASCII local part; with SMTPUTF8 it is legal
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{addr}>'


def _build(
    settings: Settings, *, to_name: str, to_addr: str, subject: str, text: str, html: str,
    purpose: str,
) -> OutboundMail:
    sender = settings.outbound_from
    smtputf8 = not (sender.isascii() and to_addr.isascii())
    policy = SMTPUTF8 if smtputf8 else SMTP
    msg = EmailMessage(policy=policy)
    try:
        msg["From"] = _mailbox(SENDER_NAME, sender, smtputf8)
        msg["To"] = _mailbox(to_name, to_addr, smtputf8)
        msg["Subject"] = subject
        msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        msg["Message-ID"] = make_msgid("bccd", domain=domain_of(sender) or "localhost")
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
        msg.set_content(text, cte="quoted-printable")
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
        raw = msg.as_bytes(policy=policy)
    except ValueError as exc:  # the email package refuses CR/LF and malformed addresses
        raise MailBuildError(f"the {purpose} mail to {to_addr} cannot be built: {exc}") from None
    return OutboundMail(sender=sender, recipients=(to_addr,), purpose=purpose,
                        message=raw.decode("utf-8" if smtputf8 else "ascii"), smtputf8=smtputf8)


def confirmation(
    settings: Settings, *, user_name: str, user_email: str, company: str, address: str,
    url: str, expires_at: dt.datetime,
) -> OutboundMail:
    """The mail to ``address`` asking to confirm it as an alternate of the user."""
    name = user_name or user_email
    ttl = human_duration(settings.confirm.ttl)
    subject = f"Confirm {address} as your Smart Bcc sending address"
    text = (
        f"Hello {name},\n\n"
        f"someone - most likely you - asked to add {address} as a sending address of\n"
        f"{name} <{user_email}> in {company}'s Smart Bcc.\n\n"
        f"What confirming does: copies of mail sent from {address} and Bcc'd to your\n"
        "Smart Bcc address will be filed in the CRM as your mail. Nothing is ever sent\n"
        "on your behalf.\n\n"
        "To confirm, open this link and press the Confirm button:\n\n"
        f"  {url}\n\n"
        f"The link works once and expires in {ttl} ({when(expires_at)}).\n"
        "If you did not ask for this, ignore this email: nothing changes.\n"
    )
    html = _env.get_template("mail_confirm.html").render(
        subject=subject, user_name=name, user_email=user_email, company=company,
        address=address, url=url, ttl=ttl, expires=when(expires_at),
    )
    return _build(settings, to_name=name, to_addr=address, subject=subject, text=text,
                  html=html, purpose="confirmation")


def notice(
    settings: Settings, *, user_name: str, user_email: str, address: str, held: int,
    settings_url: str, expires_at: dt.datetime | None, emailed_at: dt.datetime | None,
) -> OutboundMail:
    """The mail to the user: copies from ``address`` are in quarantine; confirm to file them.

    It sends the user to ``settings_url`` (the Mail page settings), whose "Send
    confirmation link" emails the confirmation to ``address`` itself — or, with
    ``emailed_at``, to the confirmation already emailed there (valid until ``expires_at``).
    """
    name = user_name or user_email
    retention = human_duration(settings.retention.quarantine)
    them = "it" if held == 1 else "them"
    count = copies(held)
    subject = (f"{count[:1].upper()}{count[1:]} from {address} kept in quarantine:"
               f" confirm the address to file {them}")
    lines = [
        f"Hello {name},\n\n",
        f"we received {copies(held)} sent from {address} to your Smart Bcc address.\n",
        f"{address} is not a confirmed address of your account ({user_email}), so we kept\n",
        f"{them} in quarantine instead of filing {them} in the CRM.\n\n",
    ]
    expires = when(expires_at) if expires_at else ""
    if emailed_at is not None:
        lines += [
            f"If {address} is your address, confirm it to file these emails: we emailed a\n",
            f"confirmation link to {address} on {when(emailed_at)}. Open that email and press\n",
            f"Confirm (the link is valid until {expires}).\n\n",
        ]
    else:
        lines += [
            f"If {address} is your address, confirm it to file these emails (and future\n",
            "copies sent from it): open your Smart Bcc settings and choose \"Send confirmation\n",
            f"link\" next to {address}; then open the link we email to {address}.\n\n",
            f"  {settings_url}\n\n",
        ]
    lines += [
        f"If you do not recognise {address}, ignore this email: quarantined copies are\n",
        f"deleted after {retention}. We tell you about an address at most once a day.\n",
    ]
    html = _env.get_template("mail_notice.html").render(
        subject=subject, user_name=name, user_email=user_email, address=address, held=held,
        held_text=copies(held), settings_url=settings_url, expires=expires,
        emailed=when(emailed_at) if emailed_at else None, retention=retention,
    )
    return _build(settings, to_name=name, to_addr=user_email, subject=subject,
                  text="".join(lines), html=html, purpose="notice")


def signin_link(settings: Settings, *, user_name: str, user_email: str, url: str,
                expires_at: dt.datetime) -> OutboundMail:
    """The mail with a single-use link that signs the user in to the Mail page (SPEC §9)."""
    name = user_name or user_email
    ttl = human_duration(settings.signin.link_ttl)
    subject = "Your Smart Bcc sign-in link"
    text = (
        f"Hello {name},\n\n"
        "someone - most likely you - asked to sign in to Smart Bcc as\n"
        f"{user_email}. Open this link and press the Sign in button:\n\n"
        f"  {url}\n\n"
        f"The link works once and expires in {ttl} ({when(expires_at)}).\n"
        "If you did not ask for it, ignore this email: nobody can sign in without it.\n"
    )
    html = _env.get_template("mail_signin.html").render(
        subject=subject, user_name=name, user_email=user_email, url=url, ttl=ttl,
        expires=when(expires_at))
    return _build(settings, to_name=name, to_addr=user_email, subject=subject, text=text,
                  html=html, purpose="signin")
