"""Webhooks (SPEC §9): signed POSTs to ``webhooks.url`` of the events queued by
``bccd.store.events``, delivered from the durable outbox.

Delivery (:func:`deliver_job`, outbox kind ``webhook``) follows *Standard Webhooks*:
the body is ``{"type", "timestamp", "data"}`` (JSON, fixed at enqueue time); headers
``webhook-id`` (``msg_…``, the same on every retry, so receivers can deduplicate),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` under ``webhooks.secret`` (a
``whsec_<base64>`` secret is base64-decoded; any other string is used as raw bytes; no
secret → no signature header). A 2xx answer is success; anything else (or a network
error) is retried by the outbox with exponential back-off (2 s, 4 s, 8 s … at most
15 min, for up to 3 days), then ``failed``. Redirects are not followed. The job row is
the delivery record: ``deliveries(session, company_id)`` lists recent ones with their
state, attempts and last error (the admin API shows them).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd import metrics
from bccd.config import WebhookSettings
from bccd.log import get_logger
from bccd.notify.jobs import PermanentFailure
from bccd.store.events import KIND
from bccd.store.models import OutboxJob

log = get_logger("bccd.webhooks")

TIMEOUT = 10.0
USER_AGENT = "bccd-webhooks/1"


# ------------------------------------------------------------------ signing
def secret_key(secret: str) -> bytes:
    """The HMAC key: ``whsec_<base64>`` decoded (Standard Webhooks), else the raw bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_"):], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def body_of(event: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed) — the same for every attempt."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def headers_for(secret: str, msg_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    ts = int(now if now is not None else time.time())
    headers = {"content-type": "application/json", "user-agent": USER_AGENT,
               "webhook-id": msg_id, "webhook-timestamp": str(ts)}
    if secret:
        headers["webhook-signature"] = sign(secret, msg_id, ts, body)
    return headers


# ------------------------------------------------------------------ delivery
class DeliveryFailed(Exception):
    """The receiver did not answer 2xx (retried by the outbox)."""


async def deliver_job(settings: WebhookSettings, payload: dict[str, Any]) -> None:
    """The outbox handler for kind ``webhook`` (bound to ``webhooks`` settings): one
    signed POST."""
    url = settings.url
    if not url:
        raise PermanentFailure("webhooks.url is not configured")
    try:
        msg_id = str(payload["webhook_id"])
        event = dict(payload["event"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentFailure(f"malformed webhook job: {exc!r}") from None
    body = body_of(event)
    headers = headers_for(settings.secret, msg_id, body)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
            resp = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        metrics.webhook_delivered(False)
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= resp.status_code < 300:
        metrics.webhook_delivered(False)
        raise DeliveryFailed(f"receiver answered {resp.status_code}")
    metrics.webhook_delivered(True)
    log.info("webhook_delivered", webhook_id=msg_id, type=event.get("type"),
             status=resp.status_code)


@dataclass(frozen=True, slots=True)
class Delivery:
    job_id: int
    webhook_id: str
    type: str
    state: str
    attempts: int
    last_error: str
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    done_at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "webhook_id": self.webhook_id, "type": self.type,
                "state": self.state, "attempts": self.attempts, "last_error": self.last_error,
                "created_at": self.created_at.isoformat(),
                "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
                "done_at": self.done_at.isoformat() if self.done_at else None}


SCAN = 2000


def deliveries(session: Session, company_id: int, *, state: str | None = None,
               limit: int = 50) -> list[Delivery]:
    """The company's most recent deliveries (newest first), optionally of one state.

    Payloads are JSON, so the company filter is applied here over the newest ``SCAN``
    webhook jobs (the outbox purges finished jobs after a week)."""
    q = select(OutboxJob).where(OutboxJob.kind == KIND)
    if state is not None:
        q = q.where(OutboxJob.state == state)
    out: list[Delivery] = []
    for job in session.scalars(q.order_by(OutboxJob.id.desc()).limit(SCAN)):
        payload = job.payload or {}
        if payload.get("company_id") != company_id:
            continue
        event = payload.get("event") or {}
        out.append(Delivery(
            job_id=job.id, webhook_id=str(payload.get("webhook_id", "")),
            type=str(event.get("type", "")), state=job.state, attempts=job.attempts,
            last_error=job.last_error, created_at=job.created_at,
            next_attempt_at=job.next_attempt_at if job.state == "pending" else None,
            done_at=job.done_at))
        if len(out) >= limit:
            break
    return out
