"""Ingest's side of quarantine (SPEC §4.4): keeping an authentic copy whose sender is not
(yet) the user's, and filing held copies once their address is confirmed.

- ``hold_request(...)`` builds the ``quarantine.hold.HoldRequest`` of one copy;
  ``keep(db, settings, req)`` keeps it (blocking) and answers with an ``Outcome``:
  ``QUARANTINED`` (250), or ``REFUSED`` 550 5.7.1 when the quarantine refuses it;
  ``hold(...)`` is the same for the event loop, shielded from a client that hangs up.
- ``release_address(pipeline, user_id, address)`` files every held copy from that
  address through the normal filing path (``Pipeline.release``, source ``bcc``) — only
  while the address is still confirmed — and marks it released *after* filing, with a
  conditional UPDATE. Filing is idempotent (dedup per user), so a crash or a second
  releaser can only ever produce one message: exactly once. ``release_one`` is the
  operator's override (``bccd quarantine release ID``) and does not need the address to
  be confirmed. ``release_job`` is the outbox handler of ``quarantine_release``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bccd import replies as R
from bccd.auth.sender import Mailbox
from bccd.auth.verdict import AuthVerdict
from bccd.config import Settings
from bccd.ingest.outcome import Disposition, Outcome, SenderRefused, classify
from bccd.ingest.parse import Parsed
from bccd.ingest.types import Envelope
from bccd.log import get_logger
from bccd.notify.jobs import PermanentFailure
from bccd.quarantine import copies
from bccd.quarantine import hold as holding
from bccd.store.db import Database
from bccd.store.models import utcnow

if TYPE_CHECKING:
    from bccd.ingest.pipeline import Pipeline

log = get_logger("bccd.quarantine")


def hold_request(
    *, user_id: int, rcpt: str, raw: bytes, parsed: Parsed, mailbox: Mailbox,
    verdict: AuthVerdict, envelope: Envelope,
) -> holding.HoldRequest:
    return holding.HoldRequest(
        user_id=user_id, address=mailbox.email, raw=raw, dedup_key=parsed.dedup_key[:998],
        subject=parsed.subject or "",
        envelope={"rcpt": rcpt, "mail_from": envelope.mail_from, "client_ip": envelope.client_ip,
                  "helo": envelope.helo, "tls": envelope.tls},
        auth=verdict.as_dict(),
    )


def keep(db: Database, settings: Settings, req: holding.HoldRequest,
         now: dt.datetime | None = None) -> Outcome:
    try:
        held = holding.keep(db, settings, req, now)
    except holding.HoldRefused as exc:
        return Outcome.from_error(SenderRefused(exc.reason))
    return Outcome(Disposition.QUARANTINED, R.STORED, reason=held.reason,
                   extra={"quarantine_id": held.id})


async def hold(db: Database, settings: Settings, req: holding.HoldRequest) -> Outcome:
    task = asyncio.ensure_future(db.run(keep, db, settings, req))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
    except Exception as exc:  # the taxonomy decides
        err = classify(exc)
        log.warning("quarantine_failed", user=req.user_id, error=err.reason, detail=err.detail)
        return Outcome.from_error(err)


# ------------------------------------------------------------------ releasing
def verdict_from(data: dict[str, Any], **extra: Any) -> AuthVerdict:
    names = {f.name for f in dataclasses.fields(AuthVerdict)}
    kw = {k: v for k, v in data.items() if k in names}
    kw["dkim_domains"] = tuple(kw.get("dkim_domains") or ())
    kw["extra"] = {**dict(kw.get("extra") or {}), **extra}
    return AuthVerdict(**kw)


async def release_one(pipeline: Pipeline, qid: int) -> Outcome | None:
    """File one held copy (operator override: the address need not be confirmed).

    None when there is no such copy; a ``DUPLICATE`` outcome when it was released already.
    """
    db = pipeline.db
    held = await db.run(copies.load, db, qid)
    if held is None:
        return None
    if held.released:
        return Outcome(Disposition.DUPLICATE, R.STORED, reason="already released")
    now = utcnow()
    auth = verdict_from(held.auth, quarantine={"id": held.id, "released_at": now.isoformat()})
    out = await pipeline.release(held.raw, user_id=held.user_id, auth=auth)
    if out.disposition in (Disposition.STORED, Disposition.DUPLICATE, Disposition.DROPPED):
        await db.run(copies.mark_released, db, qid, now)
    log.info("quarantine_released", quarantine_id=qid, user=held.user_id,
             outcome=out.disposition.value, reason=out.reason, message=out.message_id)
    return out


@dataclass(slots=True)
class ReleaseSummary:
    filed: int = 0
    temporary: int = 0
    refused: int = 0
    reason: str = ""


async def release_address(pipeline: Pipeline, user_id: int, address: str) -> ReleaseSummary:
    """File every held copy from ``address`` while it is a confirmed alternate of the user."""
    summary = ReleaseSummary()
    for qid in await pipeline.db.run(copies.releasable, pipeline.db, user_id, address):
        out = await release_one(pipeline, qid)
        if out is None:
            continue
        if out.disposition is Disposition.TEMPFAIL:
            summary.temporary += 1
            summary.reason = out.reason
        elif out.disposition is Disposition.REFUSED:
            summary.refused += 1
        else:
            summary.filed += 1
    return summary


async def release_job(pipeline: Pipeline, payload: dict[str, Any]) -> None:
    """The outbox handler for kind ``quarantine_release`` (bound to the pipeline)."""
    try:
        user_id, address = int(payload["user_id"]), str(payload["address"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentFailure(f"malformed release job: {exc!r}") from None
    summary = await release_address(pipeline, user_id, address)
    if summary.temporary:
        raise RuntimeError(f"{summary.temporary} held copies not filed yet: {summary.reason}")
