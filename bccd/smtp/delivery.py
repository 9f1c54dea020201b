"""What the SMTP hooks do with the ingest pipeline: the recipient lookup of RCPT and the
filing of a DATA, turned into replies.

``Delivery(settings, pipeline)`` is built by ``bccd serve`` once the pipeline is, and
handed to the listener (``SmtpService.attach``); ``Handler`` (the aiosmtpd hooks) waits
for it before it answers RCPT. ``await recipient(address)`` → a ``Target`` or the refusal
(SPEC §2/§3: relay 550 5.7.1, unknown 550 5.1.1). ``await data(server, session,
envelope)`` hands the message to the pipeline, which returns one ``Outcome`` per accepted
RCPT, in order, and turns them into replies: SMTP one (any temporary failure → that 4xx
for all, dedup makes the retry safe; else 250 when at least one copy was kept; else the
first refusal), LMTP one per recipient, each with its own outcome.

From a trusted relay (``server.xforward_allowed``) the XFORWARD client (ADDR, HELO, NAME)
replaces the connecting one for SPF, and the relay's ``Authentication-Results`` whose
authserv-id is in ``auth.trusted_authserv_ids`` travel in ``Envelope.trusted_results``;
from anyone else neither is used. The null sender ``<>`` is ``""`` in the envelope.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bccd import replies as R
from bccd.auth.results import trusted_results
from bccd.config import Settings
from bccd.ingest.outcome import Disposition, Outcome
from bccd.ingest.pipeline import Pipeline
from bccd.ingest.types import Envelope, Target
from bccd.log import get_logger
from bccd.replies import Reply
from bccd.smtp.handler import peer

log = get_logger("bccd.smtp")


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


class Delivery:
    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline

    async def recipient(self, address: str) -> Target | Reply:
        # recipients.resolve in the database threads, one read shared by concurrent RCPTs
        return await self.pipeline.recipient(address)

    async def data(self, server: Any, session: Any, envelope: Any) -> list[Reply]:
        """SMTP: the one reply to this DATA; LMTP: one per accepted RCPT, in order."""
        outcomes = await self.deliver(server, session, envelope)
        if not getattr(server, "bccd_lmtp", False):
            return [combine(outcomes)]
        return [per_recipient(o) for o in outcomes]

    async def deliver(self, server: Any, session: Any, envelope: Any) -> list[Outcome]:
        """One ``Outcome`` per accepted RCPT, in RCPT order (the pipeline's contract)."""
        targets: list[Target] = list(getattr(envelope, "bccd_targets", []))
        raw = envelope.original_content or b""
        relay = bool(getattr(server, "xforward_allowed", False))
        xf: dict[str, str] = (getattr(session, "bccd_xforward", None) or {}) if relay else {}
        mail_from = envelope.mail_from or ""
        env = Envelope(
            mail_from="" if mail_from == "<>" else mail_from,
            client_ip=xf.get("ADDR") or peer(session),
            helo=xf.get("HELO") or (session.host_name or ""),
            client_name=xf.get("NAME") or "",
            tls=session.ssl is not None,
            trusted_results=await self._trusted_results(raw) if relay else (),
        )
        log.info("data_received", size=len(raw), rcpts=len(targets), client=env.client_ip,
                 helo=env.helo, relay=peer(session) if xf else None)
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
