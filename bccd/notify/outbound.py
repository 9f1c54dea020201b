"""Outbound mail through the configured relay (``[outbound]``), always from the outbox.

Contract:

- ``OutboundMail`` is one ready message: envelope sender, recipients and the complete
  RFC 5322 text (built once, so every retry sends the same Message-ID).
  ``enqueue_mail(session, mail)`` adds it to the outbox (kind ``mail``) in the caller's
  transaction; nothing in a request path ever talks to the relay.
- ``send(settings, mail, local_hostname=…)`` delivers it with aiosmtplib:
  ``outbound.security`` ``none`` (plain, no STARTTLS even if offered — a local relay),
  ``starttls`` (required, certificate verified) or ``ssl`` (implicit TLS, verified against
  the system trust store, which honours ``SSL_CERT_FILE``); AUTH when a username is set.
  Raises :class:`OutboundPermanent` when the relay refused for good (5xx to the sender,
  every recipient, or the data) and :class:`OutboundTemporary` for everything else
  (connection refused, timeout, TLS failure, 4xx, authentication failure — a config
  mistake the operator can fix without losing the mail).
- ``deliver_job(settings, payload)`` is the outbox handler for kind ``mail``: a permanent
  refusal becomes ``jobs.PermanentFailure``; a temporary one is retried with back-off.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiosmtplib
from sqlalchemy.orm import Session

from bccd.config import OutboundSettings, Settings
from bccd.log import get_logger
from bccd.notify.jobs import PermanentFailure
from bccd.store import outbox
from bccd.store.models import OutboxJob

log = get_logger("bccd.outbound")

MAIL_KIND = "mail"


class OutboundError(Exception):
    """Delivery to the relay failed; ``str(exc)`` is a one-line reason."""


class OutboundTemporary(OutboundError):
    pass


class OutboundPermanent(OutboundError):
    pass


@dataclass(frozen=True, slots=True)
class OutboundMail:
    sender: str                   # envelope sender (MAIL FROM)
    recipients: tuple[str, ...]
    message: str                  # the whole message, CRLF line ends
    smtputf8: bool = False        # an address needs SMTPUTF8 (the text is then UTF-8)
    purpose: str = ""             # for logs: confirmation, notice …

    def to_payload(self) -> dict[str, Any]:
        return {"sender": self.sender, "recipients": list(self.recipients),
                "message": self.message, "smtputf8": self.smtputf8, "purpose": self.purpose}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> OutboundMail:
        try:
            return cls(sender=str(payload["sender"]),
                       recipients=tuple(str(r) for r in payload["recipients"]),
                       message=str(payload["message"]), smtputf8=bool(payload.get("smtputf8")),
                       purpose=str(payload.get("purpose", "")))
        except (KeyError, TypeError) as exc:
            raise PermanentFailure(f"malformed mail job: {exc!r}") from None


def enqueue_mail(session: Session, mail: OutboundMail) -> OutboxJob:
    return outbox.enqueue(session, MAIL_KIND, mail.to_payload())


def _permanent(code: int) -> bool:
    return 500 <= code < 600


async def send(settings: OutboundSettings, mail: OutboundMail, *, local_hostname: str) -> None:
    """Deliver ``mail`` to the relay once; see the module docstring for the errors."""
    data = mail.message.encode("utf-8" if mail.smtputf8 else "ascii")
    kwargs: dict[str, Any] = {
        "sender": mail.sender, "recipients": list(mail.recipients),
        "hostname": settings.host, "port": settings.port, "timeout": float(settings.timeout),
        "local_hostname": local_hostname,
        "use_tls": settings.security == "ssl",
        "start_tls": settings.security == "starttls",
        "mail_options": ["SMTPUTF8"] if mail.smtputf8 else [],
    }
    if settings.username:
        kwargs.update(username=settings.username, password=settings.password)
    where = f"{settings.host}:{settings.port}"
    try:
        errors, _ = await aiosmtplib.send(data, **kwargs)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        reason = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        cls = OutboundPermanent if codes and all(map(_permanent, codes)) else OutboundTemporary
        raise cls(f"relay {where} refused every recipient: {reason}") from None
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise OutboundTemporary(f"relay {where} refused our login ({exc.code} {exc.message});"
                                " check outbound.username/password") from None
    except aiosmtplib.SMTPResponseException as exc:
        cls = OutboundPermanent if _permanent(exc.code) else OutboundTemporary
        raise cls(f"relay {where} answered {exc.code} {exc.message}") from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise OutboundTemporary(f"relay {where} unavailable: {type(exc).__name__}: {exc}") from None
    if errors:
        # some recipients were refused; the message went to the others — nothing to retry
        log.warning("outbound_partly_refused", relay=where,
                    refused={k: f"{v.code} {v.message}" for k, v in errors.items()})


async def deliver_job(settings: Settings, payload: dict[str, Any]) -> None:
    """The outbox handler for kind ``mail`` (bound to the settings by ``bccd serve``)."""
    mail = OutboundMail.from_payload(payload)
    hostname = await asyncio.to_thread(lambda: settings.hostname)  # may ask DNS
    try:
        await send(settings.outbound, mail, local_hostname=hostname)
    except OutboundPermanent as exc:
        raise PermanentFailure(str(exc)) from None
    log.info("outbound_sent", purpose=mail.purpose, recipients=list(mail.recipients))
