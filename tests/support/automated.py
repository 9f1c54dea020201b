"""Real-shaped automated and look-alike messages (SPEC §5.10), as the mail systems that
write them do: out-of-office replies of Exchange, Gmail, Apple and Sieve, mailing-list
posts and newsletters, delivery reports (a Postfix-shaped DSN here; the real ones come
from the test Postfix and from ``../shared/corpora/flanker/bounce``), and the look-alikes
that must stay ``person``.

``SHAPES``: name → ``Shape(build, category, reason)``; ``build(sender, user, **kw)``
returns the raw bytes (CRLF) of the message ``sender`` sent to ``user``; ``kw`` may give
``message_id`` and ``in_reply_to`` (the user's message it answers). ``reason`` is a part
of the ``category_reason`` bccd records.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CORPORA = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora"
FLANKER_BOUNCES = (CORPORA / "flanker" / "bounce").resolve()
DATE = "Thu, 26 Nov 2026 10:05:00 +0000"


def _mid(kw: dict[str, str], domain: str) -> str:
    return kw.get("message_id") or f"<{uuid.uuid4().hex}@{domain}>"


def _reply_headers(kw: dict[str, str]) -> str:
    parent = kw.get("in_reply_to")
    return f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n" if parent else ""


def _msg(headers: str, body: str) -> bytes:
    return (headers + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n" + body).encode()


def _domain(address: str) -> str:
    return address.rpartition("@")[2].rstrip(">")


def exchange_ooo(sender: str, user: str, **kw: str) -> bytes:
    return _msg(
        f"From: Bob Client <{sender}>\r\nTo: <{user}>\r\nSubject: Automatic reply: Quote #42\r\n"
        f"Date: {DATE}\r\nMessage-ID: {_mid(kw, _domain(sender))}\r\n{_reply_headers(kw)}"
        "Thread-Topic: Quote #42\r\nContent-Language: en-US\r\n"
        "X-MS-Has-Attach:\r\nX-MS-TNEF-Correlator:\r\nX-Auto-Response-Suppress: All\r\n"
        f"X-MS-Exchange-Inbox-Rules-Loop: {sender}\r\nAuto-Submitted: auto-generated\r\n",
        "I am out of the office until Monday with limited access to email.\r\n")


def gmail_vacation(sender: str, user: str, **kw: str) -> bytes:
    return _msg(
        f"From: Bob Client <{sender}>\r\nTo: {user}\r\nSubject: Re: Quote #42\r\n"
        f"Date: {DATE}\r\nMessage-ID: {_mid(kw, 'mail.gmail.com')}\r\n{_reply_headers(kw)}"
        "Auto-Submitted: auto-replied\r\n",
        "Thanks for your mail. I'm on vacation and will reply when I'm back.\r\n")


def apple_vacation(sender: str, user: str, **kw: str) -> bytes:
    return _msg(
        f"From: Bob Client <{sender}>\r\nTo: {user}\r\nSubject: Re: Quote #42\r\n"
        f"Date: {DATE}\r\nMessage-ID: {_mid(kw, 'icloud.com')}\r\n{_reply_headers(kw)}"
        "X-Autoreply: yes\r\nX-Mailer: iCloud MailServer\r\n",
        "Out of office.\r\n")


def sieve_vacation(sender: str, user: str, **kw: str) -> bytes:
    """RFC 3834 / RFC 5230: sent with a null return path, as the RFC asks."""
    return _msg(
        f"Return-Path: <>\r\nFrom: <{sender}>\r\nTo: <{user}>\r\n"
        f"Subject: Auto: Quote #42\r\nDate: {DATE}\r\nMessage-ID: {_mid(kw, _domain(sender))}\r\n"
        f"{_reply_headers(kw)}Auto-Submitted: auto-replied (vacation)\r\nPrecedence: bulk\r\n",
        "I am away.\r\n")


def autorespond(sender: str, user: str, **kw: str) -> bytes:
    return _msg(
        f"From: <{sender}>\r\nTo: <{user}>\r\nSubject: Ticket received\r\nDate: {DATE}\r\n"
        f"Message-ID: {_mid(kw, _domain(sender))}\r\n{_reply_headers(kw)}"
        "X-Autorespond: Ticket received\r\n", "We got your message.\r\n")


def precedence_auto_reply(sender: str, user: str, **kw: str) -> bytes:
    return _msg(
        f"From: <{sender}>\r\nTo: <{user}>\r\nSubject: Away\r\nDate: {DATE}\r\n"
        f"Message-ID: {_mid(kw, _domain(sender))}\r\nPrecedence: auto_reply\r\n", "Away.\r\n")


def list_post(sender: str, user: str, **kw: str) -> bytes:
    return _msg(
        f"From: Bob Client <{sender}>\r\nTo: sales-talk@lists.client.test\r\n"
        f"Subject: [sales-talk] Pricing question\r\nDate: {DATE}\r\n"
        f"Message-ID: {_mid(kw, _domain(sender))}\r\n{_reply_headers(kw)}"
        "List-Id: Sales talk <sales-talk.lists.client.test>\r\n"
        "List-Post: <mailto:sales-talk@lists.client.test>\r\n"
        "List-Unsubscribe: <mailto:sales-talk-leave@lists.client.test>\r\nPrecedence: list\r\n"
        f"Sender: sales-talk-bounces@lists.client.test\r\nCc: {user}\r\n",
        "Has anyone seen the new pricing?\r\n")


def newsletter(sender: str, user: str, **kw: str) -> bytes:
    return _msg(
        f"From: Client News <{sender}>\r\nTo: {user}\r\nSubject: Our November news\r\n"
        f"Date: {DATE}\r\nMessage-ID: {_mid(kw, _domain(sender))}\r\n"
        "List-Unsubscribe: <https://news.client.test/u/123>, <mailto:unsub@news.client.test>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        "This month: new products.\r\n")


def bulk_precedence(sender: str, user: str, **kw: str) -> bytes:
    return _msg(
        f"From: <{sender}>\r\nTo: {user}\r\nSubject: Special offer\r\nDate: {DATE}\r\n"
        f"Message-ID: {_mid(kw, _domain(sender))}\r\nPrecedence: bulk\r\n", "Buy now.\r\n")


def helpdesk_reply(sender: str, user: str, **kw: str) -> bytes:
    """Look-alike: a customer's reply whose help desk adds ``Precedence: bulk``."""
    return _msg(
        f"From: Bob Client <{sender}>\r\nTo: {user}\r\nSubject: Re: Quote #42\r\n"
        f"Date: {DATE}\r\nMessage-ID: {_mid(kw, _domain(sender))}\r\n{_reply_headers(kw)}"
        "Precedence: bulk\r\nX-Mailer: Zammad Mail Service\r\n",
        "Yes, the quote works for us. Let's sign next week.\r\n")


def not_auto_submitted(sender: str, user: str, **kw: str) -> bytes:
    """Look-alike: ``Auto-Submitted: no`` says a person wrote it."""
    return _msg(
        f"From: Bob Client <{sender}>\r\nTo: {user}\r\nSubject: Re: Quote #42\r\n"
        f"Date: {DATE}\r\nMessage-ID: {_mid(kw, _domain(sender))}\r\n{_reply_headers(kw)}"
        "Auto-Submitted: no\r\n", "Let's talk.\r\n")


def out_of_office_words(sender: str, user: str, **kw: str) -> bytes:
    """Look-alike: a person writing that they are out of office (no header says so)."""
    return _msg(
        f"From: Bob Client <{sender}>\r\nTo: {user}\r\nSubject: Out of office next week\r\n"
        f"Date: {DATE}\r\nMessage-ID: {_mid(kw, _domain(sender))}\r\n{_reply_headers(kw)}",
        "I'm out of the office next week; can we meet on the 3rd?\r\n")


def postfix_dsn(sender: str, user: str, **kw: str) -> bytes:
    """A DSN in Postfix's shape for the user's message ``in_reply_to`` to ``sender``
    (the bounced address); from MAILER-DAEMON, with the returned message."""
    parent = kw.get("in_reply_to") or "<gone@x.test>"
    boundary = "8B1C2E0A.1700000000/smtp.mail.test"
    return (
        f"Return-Path: <>\r\nDate: {DATE}\r\nFrom: MAILER-DAEMON@smtp.mail.test "
        "(Mail Delivery System)\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"To: {user}\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
        f"Message-Id: {_mid(kw, 'smtp.mail.test')}\r\n\r\n"
        f"This is a MIME-encapsulated message.\r\n\r\n--{boundary}\r\n"
        "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        f"be delivered to one or more recipients.\r\n\r\n<{sender}>: host 127.0.0.1 said: 550 5.1.1\r\n"
        f"    The email account that you tried to reach does not exist\r\n\r\n--{boundary}\r\n"
        "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; smtp.mail.test\r\nX-Postfix-Queue-ID: 8B1C2E0A\r\n"
        f"X-Postfix-Sender: rfc822; {user}\r\nArrival-Date: {DATE}\r\n\r\n"
        f"Final-Recipient: rfc822; {sender}\r\nOriginal-Recipient: rfc822;{sender}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; 127.0.0.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 The email account that you tried to reach does not exist\r\n"
        f"\r\n--{boundary}\r\nContent-Description: Undelivered Message\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        f"From: <{user}>\r\nTo: <{sender}>\r\nSubject: Quote #42\r\nDate: {DATE}\r\n"
        f"Message-ID: {parent}\r\n\r\nHello\r\n\r\n--{boundary}--\r\n").encode()


def internal_note(sender: str, user: str, **kw: str) -> bytes:
    """``sender`` is a colleague: at the company's domain."""
    return _msg(
        f"From: Carol Colleague <{sender}>\r\nTo: {user}\r\nSubject: Lunch?\r\nDate: {DATE}\r\n"
        f"Message-ID: {_mid(kw, _domain(sender))}\r\n", "Lunch at noon?\r\n")


def person_mail(sender: str, user: str, **kw: str) -> bytes:
    return _msg(
        f"From: Bob Client <{sender}>\r\nTo: {user}\r\nSubject: Quote #42\r\nDate: {DATE}\r\n"
        f"Message-ID: {_mid(kw, _domain(sender))}\r\n{_reply_headers(kw)}",
        "Could you send the quote?\r\n")


@dataclass(frozen=True)
class Shape:
    build: Callable[..., bytes]
    category: str
    reason: str
    reply: bool = False        # sent as a reply to the user's earlier message
    colleague: bool = False    # the sender is a colleague (the company's domain)


SHAPES: dict[str, Shape] = {
    "exchange_out_of_office": Shape(exchange_ooo, "auto_reply", "Auto-Submitted: auto-generated"),
    "gmail_vacation": Shape(gmail_vacation, "auto_reply", "Auto-Submitted: auto-replied"),
    "apple_vacation": Shape(apple_vacation, "auto_reply", "X-Autoreply"),
    "sieve_vacation_with_null_return_path": Shape(sieve_vacation, "auto_reply", "Auto-Submitted"),
    "x_autorespond": Shape(autorespond, "auto_reply", "X-Autorespond"),
    "precedence_auto_reply": Shape(precedence_auto_reply, "auto_reply", "Precedence: auto_reply"),
    "mailing_list_post": Shape(list_post, "bulk", "List-Id"),
    "newsletter": Shape(newsletter, "bulk", "List-Unsubscribe"),
    "precedence_bulk": Shape(bulk_precedence, "bulk", "Precedence: bulk"),
    "postfix_shaped_dsn": Shape(postfix_dsn, "bounce", "delivery report", reply=True),
    "colleague_note": Shape(internal_note, "internal", "the company's", colleague=True),
    "customer_mail": Shape(person_mail, "person", ""),
    # look-alikes that stay person
    "helpdesk_reply_with_precedence_bulk": Shape(helpdesk_reply, "person", "", reply=True),
    "auto_submitted_no": Shape(not_auto_submitted, "person", "", reply=True),
    "out_of_office_in_words_only": Shape(out_of_office_words, "person", ""),
}


def flanker_bounce(name: str) -> bytes:
    return (FLANKER_BOUNCES / name).read_bytes()
