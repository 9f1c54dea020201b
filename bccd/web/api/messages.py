"""``POST /api/v1/messages`` (SPEC §12): send mail as the caller, through their own mailbox.

Validation and the answer's shape only; the work is ``compose.send.Sender`` (the same as
the CLI's ``bccd send`` and the Mail page's compose form). ``201`` once the submission
server accepted the message (``status: "sent"``), ``202`` when it is queued for a retry
(``status: "queued"``), ``422`` with the server's own reply when it refused the message
for good (``errors`` names each refused recipient's field), ``409`` when the caller has no
mailbox that can send or the mailbox refused the login. ``Idempotency-Key`` (a header, up
to 255 printable characters): a repeat returns the first answer and never sends twice; the
same key with a different request is ``422``, while the first is still running ``409``.
``track_opens``/``track_clicks`` (SPEC §13) override the caller's tracking settings for
this message: ``409`` while the company does not allow tracking, ``422`` for a plain-text
message (only HTML carries tracking).
Attachments come base64-encoded in the JSON: the route takes bodies as large as
``smtp.max_message_size`` in base64 (``body_limit``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from bccd.compose.mime import Part, attachment_allowance
from bccd.compose.prepare import SendRequest
from bccd.config import Settings
from bccd.errors import Invalid
from bccd.web.api import schemas_compose as C
from bccd.web.api.core import CONFLICT, PROBLEM, Caller, services_of
from bccd.web.limits import compose_limit

router = APIRouter(tags=["messages"])
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=255, pattern=r"^[\x21-\x7e]{1,255}$",
    description="a repeat with the same key returns the first answer and never sends twice")]
SENT: dict[int | str, dict[str, Any]] = {
    201: {"model": C.MessageSent, "description": "sent: the submission server accepted it"},
    202: {"model": C.MessageSent, "description": "queued: a temporary failure; retried"},
}


def body_limit(settings: Settings) -> int:
    """Bytes this route accepts: the largest message, base64-encoded, and room for JSON
    (``web.limits`` counts them while they stream, in front of everything)."""
    return compose_limit(settings.smtp.max_message_size)


def _attachments(items: list[C.AttachmentIn], max_message_size: int) -> tuple[Part, ...]:
    limit = attachment_allowance(max_message_size)
    out: list[Part] = []
    total = 0
    for i, a in enumerate(items):
        try:
            data = base64.b64decode("".join(a.content_base64.split()), validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"attachments.{i}.content_base64: not valid base64") from None
        total += len(data)
        if total > limit:
            raise Invalid(f"attachments.{i}: the attachments come to more than "
                          f"{limit / 1024 / 1024:.1f} MiB, the most a message of "
                          f"{max_message_size / 1024 / 1024:.1f} MiB can carry")
        out.append(Part(a.filename, a.content_type.lower(), data))
    return tuple(out)


@router.post("/messages", status_code=201, response_model=C.MessageSent,
             operation_id="sendMessage", responses={**SENT, **CONFLICT})
async def send_message(request: Request, p: Caller, body: C.MessageIn,
                       idempotency_key: IdempotencyKey = None) -> Any:
    """Send a message as the caller through their mailbox; it is filed at once in the
    caller's mail (in the replied-to thread, linked to the entity it was written from)."""
    services = services_of(request)
    req = SendRequest(
        user_id=p.user_id, to=tuple(body.to), cc=tuple(body.cc), bcc=tuple(body.bcc),
        subject=body.subject, html=body.html, text=body.text, template_id=body.template_id,
        reply_to=None if body.reply_to is None else str(body.reply_to),
        forward_of=None if body.forward_of is None else str(body.forward_of),
        deal_id=body.deal_id, lead_id=body.lead_id, project_id=body.project_id,
        person_id=body.person_id,
        attachments=_attachments(body.attachments, services.settings.smtp.max_message_size),
        signature=body.signature, from_mailbox=body.from_mailbox,
        track_opens=body.track_opens, track_clicks=body.track_clicks)
    digest = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True)
                            .encode()).hexdigest()
    answer = await services.sender.send(req, idempotency_key=idempotency_key,
                                        request_hash=digest)
    return JSONResponse(answer.body, status_code=answer.status_code,
                        media_type=PROBLEM if answer.status_code >= 400 else None)
