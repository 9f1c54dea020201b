"""Which category a message is (SPEC §5.10): the small named checks of ``CHECKS``, in
order; the first that recognizes the message decides, with its reason (stored on the
message as ``category_reason``); a message none recognizes is ``person``.

1. ``bounce`` — an RFC 3464 delivery report (``multipart/report;
   report-type=delivery-status``), or a null return path where the source shows it (the
   ``Return-Path: <>`` a delivering server wrote, for synced and forwarded mail; the null
   envelope sender of a Smart Bcc copy). A DSN usually also carries
   ``Auto-Submitted``: it is a bounce all the same.
2. ``auto_reply`` — ``Auto-Submitted`` other than ``no`` (RFC 3834), ``X-Autoreply``,
   ``X-Autorespond``, ``Precedence: auto_reply``.
3. ``bulk`` — ``List-Id``, ``List-Unsubscribe``, ``Precedence: bulk|list|junk``.
4. ``internal`` — every participant is a user of the company or at one of its domains.
5. ``person`` — everything else.

Look-alikes (docs/decisions.md):

* RFC 3834 asks auto-responders to send with a null return path too, so a null return
  path alone makes a bounce only when nothing marks the message as an auto-reply — or
  when it comes from a mailer daemon (``MAILER-DAEMON@…``, ``postmaster@…``) or names
  failed recipients (``X-Failed-Recipients``). An out-of-office reply with
  ``Return-Path: <>`` is an ``auto_reply``.
* ``Precedence: bulk|list|junk`` alone is weak evidence (some help desks and mail
  clients add it to personal replies): on a reply in a conversation the user already has
  that is not automated itself, it does not make the message ``bulk``. ``List-Id`` and
  ``List-Unsubscribe`` always do — a mailing list's reply to the user's own post is list
  mail.

What a check may ask costs nothing for most mail: the headers were read by the parser,
the participants and whether they are colleagues by filing's one read
(``Ask.internal``); only the ``Precedence`` look-alike asks the database
(``Ask.in_conversation``, called only for such a message).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bccd.ingest.parse import Signals
from bccd.linking import categories as C


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ask:
    """What the checks are given about one copy."""

    signals: Signals
    report: bool                          # an RFC 3464 delivery report
    null_sender: bool                     # the source shows a null return path
    sender: str                           # the From address
    replies: bool                         # it names a message it answers (In-Reply-To …)
    internal: Callable[[], bool]          # every participant is the company's
    in_conversation: Callable[[], bool]   # it answers a human conversation the user has


_Check = Callable[[Ask], "Category | None"]
_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")


def _delivery_report(ask: Ask) -> Category | None:
    if ask.report:
        return Category(C.BOUNCE, "delivery report (multipart/report; report-type=delivery-status)")
    return None


def _null_return_path(ask: Ask) -> Category | None:
    if not ask.null_sender:
        return None
    local = ask.sender.partition("@")[0].lower()
    if local in _DAEMONS:
        return Category(C.BOUNCE, f"null return path from {local}")
    if ask.signals.failed_recipients:
        return Category(C.BOUNCE, "null return path with X-Failed-Recipients")
    if _auto_reply(ask.signals) is None:
        return Category(C.BOUNCE, "null return path")
    return None  # an RFC 3834 auto-reply sent with a null return path, as asked


def _auto_reply(signals: Signals) -> str | None:
    submitted = signals.auto_submitted.split(";")[0].strip().lower()
    if submitted and submitted != "no":
        return f"Auto-Submitted: {submitted}"
    if signals.x_autoreply:
        return "X-Autoreply"
    if signals.x_autorespond:
        return "X-Autorespond"
    if signals.precedence.lower() == "auto_reply":
        return "Precedence: auto_reply"
    return None


def _auto_replied(ask: Ask) -> Category | None:
    reason = _auto_reply(ask.signals)
    return Category(C.AUTO_REPLY, reason) if reason else None


def _list_headers(ask: Ask) -> Category | None:
    if ask.signals.list_id:
        return Category(C.BULK, f"List-Id: {ask.signals.list_id[:200]}")
    if ask.signals.list_unsubscribe:
        return Category(C.BULK, "List-Unsubscribe")
    return None


def _precedence_bulk(ask: Ask) -> Category | None:
    value = ask.signals.precedence.lower()
    if value not in ("bulk", "list", "junk"):
        return None
    if ask.replies and ask.in_conversation():
        return None  # a reply in the user's conversation (module docstring)
    return Category(C.BULK, f"Precedence: {value}")


def _internal(ask: Ask) -> Category | None:
    if ask.internal():
        return Category(C.INTERNAL, "every participant is the company's")
    return None


CHECKS: tuple[_Check, ...] = (_delivery_report, _null_return_path, _auto_replied,
                              _list_headers, _precedence_bulk, _internal)
PERSON = Category(C.PERSON, "")


def categorize(ask: Ask) -> Category:
    return next((c for check in CHECKS if (c := check(ask)) is not None), PERSON)


# ---------------------------------------------------------------- what becomes of it
FILE, UNLINKED, DROP = "file", "unlinked", "drop"


def handling(category: str, automated_mail: str, internal_mail: str) -> str:
    """``file`` (linked like any mail), ``unlinked`` (stored, never linked on its own) or
    ``drop`` (accepted, counted, not stored) — the company's settings for automated and
    internal mail; a bounce is always ``unlinked`` (it joins the thread it returns)."""
    if category == C.BOUNCE:
        return UNLINKED
    if category in C.AUTOMATED:
        return {"unlinked": UNLINKED, "drop": DROP}.get(automated_mail, FILE)
    if category == C.INTERNAL:
        return DROP if internal_mail == "drop" else FILE
    return FILE


def internal(counterparts: list[str], domains: frozenset[str],
             colleagues: Callable[[list[str]], set[str]]) -> bool:
    """Every counterpart at one of ``domains`` (or a subdomain) or a colleague's address
    (``colleagues(addresses)`` → those of them that are; asked only for the rest)."""
    rest = [a for a in counterparts if not _at(a, domains)]
    return not rest or colleagues(rest) >= set(rest)


def _at(address: str, domains: frozenset[str]) -> bool:
    dom = address.rpartition("@")[2]
    while dom:
        if dom in domains:
            return True
        dom = dom.partition(".")[2]
    return False
