"""Thin aiosmtpd hooks: EHLO, MAIL, RCPT, DATA and the exception fallback.

The handler keeps no per-message state of its own: what a transaction accumulates lives
on aiosmtpd's ``Envelope`` (``bccd_targets``, ``bccd_rcpt_count``). RCPT decides the
recipient (SPEC §2/§3: relay 550 5.7.1, unknown 550 5.1.1, limit 452 4.5.3); DATA first
screens the bytes (NUL, or a dot line next to a bare CR/LF — on the wire, as the server's
``bare_dot_line`` saw it, or in the content — → 554 5.6.0, see ``guard``), then hands
them to the pipeline, which returns one ``Outcome`` per accepted RCPT, in order
(``deliver``). SMTP turns them into one reply: any temporary failure → that 4xx for all
(dedup makes the retry safe); else 250 when at least one copy was kept; else the first
refusal. LMTP answers each recipient with its own outcome. Any exception → 451 4.3.0,
no details.

From a trusted relay (``server.xforward_allowed``) the XFORWARD client (ADDR, HELO, NAME)
replaces the connecting one for SPF, and the relay's ``Authentication-Results`` whose
authserv-id is in ``auth.trusted_authserv_ids`` travel in ``Envelope.trusted_results``;
from anyone else neither is used. The null sender ``<>`` is ``""`` in the envelope.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import TLSSetupException

from bccd import replies as R
from bccd.auth.results import trusted_results
from bccd.config import Settings
from bccd.ingest.outcome import Disposition, Outcome
from bccd.ingest.pipeline import Pipeline
from bccd.ingest.types import Envelope, Target
from bccd.log import get_logger
from bccd.replies import Reply
from bccd.smtp import guard

log = get_logger("bccd.smtp")

SCREEN_INLINE = 256 * 1024  # larger messages are screened in a worker thread


def combine(outcomes: list[Outcome]) -> Reply:
    for o in outcomes:
        if o.disposition is Disposition.TEMPFAIL:
            return o.reply
    if any(o.disposition is not Disposition.REFUSED for o in outcomes):
        return R.STORED
    return outcomes[0].reply if outcomes else R.NEED_RCPT


def per_recipient(outcome: Outcome) -> Reply:
    """The LMTP reply for one recipient's copy."""
    if outcome.disposition in (Disposition.TEMPFAIL, Disposition.REFUSED):
        return outcome.reply
    return R.STORED


class Handler:
    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline

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
        # recipients.resolve in the database threads, one read shared by concurrent RCPTs
        result = await self.pipeline.recipient(address)
        if isinstance(result, Reply):
            log.info("rcpt_refused", rcpt=address, reply=str(result), client=_peer(session))
            return str(result)
        if not hasattr(envelope, "bccd_targets"):
            envelope.bccd_targets = []
        envelope.bccd_targets.append(result)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return str(R.RECIPIENT_OK)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        n = len(envelope.rcpt_tos)
        try:
            refusal = R.BARE_LINE_ENDING if getattr(server, "bare_dot_line", False) else \
                await self._screen(envelope.original_content or b"")
            if refusal is not None:
                log.info("data_refused", reply=str(refusal), size=len(envelope.original_content or b""),
                         client=_peer(session))
                replies = [refusal] * n
            else:
                outcomes = await self.deliver(server, session, envelope)
                if not getattr(server, "bccd_lmtp", False):
                    return str(combine(outcomes))
                replies = [per_recipient(o) for o in outcomes]
        except Exception as exc:  # never 5xx nor a traceback for our own fault
            log.error("data_failed", error=f"{type(exc).__name__}: {exc}")
            replies = [R.TEMP_FAILURE] * n
        if not getattr(server, "bccd_lmtp", False):
            return str(replies[0] if replies else R.NEED_RCPT)
        replies += [R.TEMP_FAILURE] * (n - len(replies))  # one reply per accepted RCPT
        return "\r\n".join(str(r) for r in replies[:n])

    async def _screen(self, raw: bytes) -> Reply | None:
        if len(raw) <= SCREEN_INLINE:
            return guard.screen_data(raw)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, guard.screen_data, raw)

    async def deliver(self, server: Any, session: Any, envelope: Any) -> list[Outcome]:
        """One ``Outcome`` per accepted RCPT, in RCPT order (the pipeline's contract)."""
        targets: list[Target] = list(getattr(envelope, "bccd_targets", []))
        raw = envelope.original_content or b""
        relay = bool(getattr(server, "xforward_allowed", False))
        xf: dict[str, str] = (getattr(session, "bccd_xforward", None) or {}) if relay else {}
        mail_from = envelope.mail_from or ""
        env = Envelope(
            mail_from="" if mail_from == "<>" else mail_from,
            client_ip=xf.get("ADDR") or _peer(session),
            helo=xf.get("HELO") or (session.host_name or ""),
            client_name=xf.get("NAME") or "",
            tls=session.ssl is not None,
            trusted_results=await self._trusted_results(raw) if relay else (),
        )
        log.info("data_received", size=len(raw), rcpts=len(targets), client=env.client_ip,
                 helo=env.helo, relay=_peer(session) if xf else None)
        return await self.pipeline.ingest(raw, targets=targets, envelope=env)

    async def _trusted_results(self, raw: bytes) -> tuple[str, ...]:
        """Authentication-Results of ``auth.trusted_authserv_ids`` (a trusted relay's own)."""
        ids = self.settings.auth.trusted_authserv_ids
        if not ids:
            return ()
        settings = self.settings

        def read() -> tuple[str, ...]:
            found = trusted_results(raw, ids, settings.authserv_id)
            return tuple(str(h.header_value()) for h in found)

        try:
            return await asyncio.get_running_loop().run_in_executor(None, read)
        except Exception as exc:  # an unreadable header is not a reason to refuse mail
            log.warning("trusted_results_unreadable", error=f"{type(exc).__name__}: {exc}")
            return ()

    async def handle_exception(self, error: Exception) -> str:
        cause = error.__cause__
        if isinstance(error, TLSSetupException):  # the client's problem; aiosmtpd hangs up
            log.info("tls_handshake_failed", reason=f"{type(cause).__name__}: {cause}")
            return str(R.TEMP_FAILURE)
        log.error("smtp_exception", error=f"{type(error).__name__}: {error}",
                  cause=f"{type(cause).__name__}: {cause}" if cause is not None else None)
        return str(R.TEMP_FAILURE)


def _peer(session: Any) -> str:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return ""
