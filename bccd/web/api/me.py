"""``/api/v1/me…``: the caller's own account — settings (SPEC §1, tracking §13), alternate addresses
(§6), blocked addresses (§5.2), quarantine (§4.4) and rejections.

The rules are the same functions the CLI uses (``accounts``, ``confirm.flow``,
``linking.blocklist``, ``quarantine``); this module validates, authorizes (the
caller acts on their own account only) and renders.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select

from bccd import accounts
from bccd.compose import signature
from bccd.confirm import flow
from bccd.errors import Conflict, NotFound
from bccd.ingest import holding
from bccd.ingest.outcome import Disposition
from bccd.linking import blocklist, linkstate
from bccd.mailstore import shapes as render
from bccd.quarantine import copies
from bccd.store.models import Quarantined, Rejection
from bccd.tracking import policy
from bccd.web.api import schemas as S
from bccd.web.api.core import (
    CONFLICT,
    NOT_FOUND,
    TOO_SOON,
    Caller,
    IdPath,
    current_user,
    param,
    run,
    services_of,
)

router = APIRouter(tags=["me"])
AddressPath = Annotated[str, Path(min_length=3, max_length=320)]


@router.get("/me", response_model=S.Me, operation_id="getMe")
async def get_me(request: Request, p: Caller) -> dict[str, Any]:
    """The caller: Smart Bcc address, settings, alternates and blocked patterns."""
    services = services_of(request)

    def work() -> dict[str, Any]:
        with services.db.read() as s:
            return render.user_full(s, current_user(s, p), services.settings)

    return await run(request, work)


def _settings(u: Any) -> dict[str, Any]:
    return {"sharing_default": u.sharing_default, "linking_mode": u.linking_mode,
            "email_links": u.email_links, "signature_html": u.signature_html,
            "tracking_opens": u.tracking_opens, "tracking_clicks": u.tracking_clicks,
            "tracking_allowed": policy.allowed(u.company)}


@router.get("/me/settings", response_model=S.UserSettings, operation_id="getSettings")
async def get_settings(request: Request, p: Caller) -> dict[str, Any]:
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.read() as s:
            return _settings(current_user(s, p))

    return await run(request, work)


@router.patch("/me/settings", response_model=S.UserSettings, operation_id="updateSettings")
async def patch_settings(request: Request, p: Caller, body: S.SettingsPatch) -> dict[str, Any]:
    """Change the sharing default (new threads only), linking mode, email links, the
    signature (HTML, sanitized; empty: none) or the tracking of mail sent from bccd
    (``409`` turning it on while the company does not allow it)."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            user = current_user(s, p)
            mode = user.linking_mode
            accounts.set_user(s, user, sharing=body.sharing_default, linking=body.linking_mode,
                              email_links=body.email_links)
            if user.linking_mode != mode:
                linkstate.mode_changed(s, user.id)  # SPEC §5.12: the threads' states follow
            if body.signature_html is not None:
                signature.set_signature(s, user, body.signature_html)
            policy.set_user(user, opens=body.tracking_opens, clicks=body.tracking_clicks)
            return _settings(user)

    return await run(request, work)


# ------------------------------------------------------------------ alternates
@router.get("/me/alternates", response_model=list[S.Alternate], operation_id="listAlternates")
async def list_alternates(request: Request, p: Caller) -> list[dict[str, Any]]:
    db = services_of(request).db

    def work() -> list[dict[str, Any]]:
        with db.read() as s:
            return flow.list_for(s, current_user(s, p))

    return await run(request, work)


def _sent(sent: flow.Sent) -> dict[str, Any]:
    return {"email": sent.address, "status": sent.status, "confirmation": "queued",
            "resent": sent.resent, "expires_at": sent.expires_at.isoformat()}


@router.post("/me/alternates", response_model=S.AlternateSent, status_code=201,
             operation_id="addAlternate", responses={**CONFLICT, **TOO_SOON})
async def add_alternate(request: Request, p: Caller, body: S.AlternateIn) -> dict[str, Any]:
    """Add an address the caller sends from; a confirmation link is emailed to it (adding a
    pending address again resends it)."""
    services = services_of(request)

    def work() -> dict[str, Any]:
        with services.db.transaction() as s:
            return _sent(flow.add(s, services.settings, current_user(s, p), body.email))

    return await run(request, work)


@router.post("/me/alternates/{address}/resend", response_model=S.AlternateSent,
             operation_id="resendAlternate", responses={**NOT_FOUND, **CONFLICT, **TOO_SOON})
async def resend_alternate(request: Request, p: Caller, address: AddressPath) -> dict[str, Any]:
    services = services_of(request)

    def work() -> dict[str, Any]:
        with services.db.transaction() as s:
            return _sent(flow.resend(s, services.settings, current_user(s, p),
                                     param(address, "address")))

    return await run(request, work)


@router.delete("/me/alternates/{address}", status_code=204, response_class=Response,
               operation_id="removeAlternate", responses=NOT_FOUND)
async def remove_alternate(request: Request, p: Caller, address: AddressPath) -> Response:
    db = services_of(request).db

    def work() -> None:
        with db.transaction() as s:
            flow.remove(s, current_user(s, p), param(address, "address"))

    await run(request, work)
    return Response(status_code=204)


# ------------------------------------------------------------------ blocked
@router.get("/me/blocked", response_model=list[S.Blocked], operation_id="listBlocked")
async def list_blocked(request: Request, p: Caller) -> list[dict[str, Any]]:
    db = services_of(request).db

    def work() -> list[dict[str, Any]]:
        with db.read() as s:
            return blocklist.listing(s, current_user(s, p))

    return await run(request, work)


@router.post("/me/blocked", response_model=S.Blocked, status_code=201, operation_id="addBlocked")
async def add_blocked(request: Request, p: Caller, body: S.BlockedIn) -> dict[str, Any]:
    """Block ``x@y.com`` exactly or ``@y.com`` with its subdomains (idempotent)."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            user = current_user(s, p)
            pattern = blocklist.add(s, user, body.pattern)
            s.flush()
            return next(b for b in blocklist.listing(s, user) if b["pattern"] == pattern)

    return await run(request, work)


@router.delete("/me/blocked/{pattern}", status_code=204, response_class=Response,
               operation_id="removeBlocked", responses=NOT_FOUND)
async def remove_blocked(request: Request, p: Caller,
                         pattern: Annotated[str, Path(min_length=2, max_length=320)]) -> Response:
    db = services_of(request).db

    def work() -> None:
        with db.transaction() as s:
            blocklist.remove(s, current_user(s, p), param(pattern, "pattern"))

    await run(request, work)
    return Response(status_code=204)


# ------------------------------------------------------------------ quarantine, rejections
@router.get("/me/quarantine", response_model=list[S.Held], operation_id="listQuarantine")
async def list_quarantine(request: Request, p: Caller,
                          held: Annotated[bool, Query(description="only copies not released")] = False
                          ) -> list[dict[str, Any]]:
    db = services_of(request).db

    def work() -> list[dict[str, Any]]:
        with db.read() as s:
            rows = copies.list_copies(s, current_user(s, p).id)
        return [r.as_dict() for r in rows if not (held and r.released_at)]

    return await run(request, work)


@router.post("/me/quarantine/{copy_id}/release", response_model=S.Released,
             operation_id="releaseQuarantined", responses={**NOT_FOUND, **CONFLICT})
async def release_quarantined(request: Request, p: Caller, copy_id: IdPath) -> dict[str, Any]:
    """File one of the caller's quarantined copies now, as their mail."""
    services = services_of(request)

    def owned() -> bool:
        with services.db.read() as s:
            user = current_user(s, p)
            return s.scalar(select(Quarantined.id).where(
                Quarantined.id == copy_id, Quarantined.user_id == user.id)) is not None

    if not await run(request, owned):
        raise NotFound(f"no quarantined copy {copy_id}")
    out = await holding.release_one(services.pipeline, copy_id)
    if out is None:
        raise NotFound(f"no quarantined copy {copy_id}")
    if out.disposition in (Disposition.REFUSED, Disposition.TEMPFAIL):
        raise Conflict(f"copy {copy_id} was not filed: {out.reason}")
    return {"id": copy_id, "outcome": out.disposition.value, "reason": out.reason,
            "message_id": out.message_id, "thread_id": out.thread_id}


@router.get("/me/rejections", response_model=list[S.RejectionOut], operation_id="listRejections")
async def list_rejections(request: Request, p: Caller,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """Recent copies refused for the caller's addresses, with their reasons."""
    db = services_of(request).db

    def work() -> list[dict[str, Any]]:
        with db.read() as s:
            user = current_user(s, p)
            rows = s.scalars(select(Rejection).where(Rejection.user_id == user.id)
                             .order_by(Rejection.id.desc()).limit(limit))
            return [{"id": r.id, "at": r.created_at.isoformat(), "recipient": r.recipient,
                     "from": r.from_header, "mail_from": r.mail_from, "client_ip": r.client_ip,
                     "message_id": r.message_id, "code": r.code, "reason": r.reason,
                     "auth": r.auth or {}} for r in rows]

    return await run(request, work)
