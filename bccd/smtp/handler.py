"""Thin aiosmtpd hooks: EHLO, MAIL, RCPT, DATA and the exception fallback.

The handler keeps no per-message state of its own: what a transaction accumulates lives
on aiosmtpd's ``Envelope`` (``bccd_targets``, ``bccd_rcpt_count``). RCPT counts the
recipients (over ``smtp.max_recipients``: 452 4.5.3) and lets the ``Delivery``
(``bccd.smtp.delivery``) decide each one; DATA first screens the bytes (NUL, or a dot line
next to a bare CR/LF — on the wire, as the server's ``bare_dot_line`` saw it, or in the
content — → 554 5.6.0, see ``guard``), then hands them to the ``Delivery``, which files
them through the pipeline and answers. Any exception → 451 4.3.0, no details.

This module loads nothing of the ingest path: ``bccd serve`` listens before it has built
the pipeline (``bccd.startup``), and the hooks that need it wait for it. The greeting,
EHLO/HELO/LHLO, STARTTLS, MAIL, RSET, NOOP and QUIT are answered at once; RCPT waits
until ``attach`` has given the handler its ``Delivery`` (DATA comes after an accepted
RCPT, so it never waits); if the server stops or fails to start before that
(``unavailable``), the waiting RCPT gets 421 4.3.2. No 250 to RCPT or DATA is given
before the ingest path is ready.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import TLSSetupException

from bccd import replies as R
from bccd.config import Settings
from bccd.log import get_logger
from bccd.replies import Reply
from bccd.smtp import guard

if TYPE_CHECKING:
    from bccd.smtp.delivery import Delivery

log = get_logger("bccd.smtp")

SCREEN_INLINE = 256 * 1024  # larger messages are screened in a worker thread


def peer(session: Any) -> str:
    found = getattr(session, "peer", None)
    if isinstance(found, tuple) and found:
        return str(found[0])
    return ""


class Handler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.delivery: Delivery | None = None
        self._decided = asyncio.Event()  # attach or unavailable was called

    def attach(self, delivery: Delivery) -> None:
        """The ingest path is ready: RCPT and DATA go through ``delivery`` from now on."""
        self.delivery = delivery
        self._decided.set()

    def unavailable(self) -> None:
        """The ingest path will not come (stopping, or start-up failed): RCPT → 421 4.3.2."""
        self._decided.set()

    async def _delivery(self) -> Delivery | None:
        if self.delivery is None:
            await self._decided.wait()
        return self.delivery

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        out = [r for r in responses if not r.startswith("250-AUTH") and r != "250 HELP"]
        out += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        if getattr(server, "xforward_allowed", False):
            out.append("250-XFORWARD NAME ADDR PROTO HELO")
        out.append("250 HELP")
        return out

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.bccd_targets = []
        envelope.bccd_rcpt_count = 0
        return str(R.SENDER_OK)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        count = getattr(envelope, "bccd_rcpt_count", 0) + 1
        envelope.bccd_rcpt_count = count
        if count > self.settings.smtp.max_recipients:
            return str(R.TOO_MANY_RECIPIENTS)
        delivery = await self._delivery()
        if delivery is None:
            return str(R.SHUTTING_DOWN)
        result = await delivery.recipient(address)
        if isinstance(result, Reply):
            log.info("rcpt_refused", rcpt=address, reply=str(result), client=peer(session))
            return str(result)
        if not hasattr(envelope, "bccd_targets"):
            envelope.bccd_targets = []
        envelope.bccd_targets.append(result)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return str(R.RECIPIENT_OK)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        n = len(envelope.rcpt_tos)
        lmtp = getattr(server, "bccd_lmtp", False)
        try:
            refusal = R.BARE_LINE_ENDING if getattr(server, "bare_dot_line", False) else \
                await self._screen(envelope.original_content or b"")
            if refusal is not None:
                log.info("data_refused", reply=str(refusal), size=len(envelope.original_content or b""),
                         client=peer(session))
                replies = [refusal] * n
            else:
                delivery = await self._delivery()
                if delivery is None:  # not after an accepted RCPT; for completeness
                    replies = [R.SHUTTING_DOWN] * n
                else:
                    replies = await delivery.data(server, session, envelope)
                    if not lmtp:
                        return str(replies[0])
        except Exception as exc:  # never 5xx nor a traceback for our own fault
            log.error("data_failed", error=f"{type(exc).__name__}: {exc}")
            replies = [R.TEMP_FAILURE] * n
        if not lmtp:
            return str(replies[0] if replies else R.NEED_RCPT)
        replies += [R.TEMP_FAILURE] * (n - len(replies))  # one reply per accepted RCPT
        return "\r\n".join(str(r) for r in replies[:n])

    async def _screen(self, raw: bytes) -> Reply | None:
        if len(raw) <= SCREEN_INLINE:
            return guard.screen_data(raw)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, guard.screen_data, raw)

    async def handle_exception(self, error: Exception) -> str:
        cause = error.__cause__
        if isinstance(error, TLSSetupException):  # the client's problem; aiosmtpd hangs up
            log.info("tls_handshake_failed", reason=f"{type(cause).__name__}: {cause}")
            return str(R.TEMP_FAILURE)
        log.error("smtp_exception", error=f"{type(error).__name__}: {error}",
                  cause=f"{type(cause).__name__}: {cause}" if cause is not None else None)
        return str(R.TEMP_FAILURE)
