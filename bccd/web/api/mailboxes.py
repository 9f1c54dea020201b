"""``/api/v1/me/mailboxes…`` and ``/api/v1/admin/mailboxes`` (SPEC §7): users connect,
change and remove their own mailboxes; admins see their company's mailboxes' states.

The steps are ``web.mailbox_flow``'s (shared with the Mail page); this module validates,
authorizes (a user acts on their own mailboxes only — another user's is "not found") and
renders. A failed login answers ``422`` with the server's own reason in ``detail`` and
what failed in ``kind`` (``auth``, ``tls``, ``connect``, ``protocol``); nothing is saved.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from bccd.mailboxes import accounts, connect, oauth, presets
from bccd.mailboxes.control import LoginFailed
from bccd.web import mailbox_flow as flow
from bccd.web.api import schemas as S
from bccd.web.api.core import (
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    Caller,
    IdPath,
    Principal,
    admin,
    current_user,
    problem,
    run,
    services_of,
)

router = APIRouter(tags=["mailboxes"])
Admin = Annotated[Principal, Depends(admin)]
Security = Literal["ssl", "starttls"]
FolderName = Annotated[str, Field(min_length=1, max_length=1000)]
LOGIN_FAILED: dict[int | str, dict[str, Any]] = {422: {"description": (
    "the server refused the login or could not be reached; `detail` is its reason, `kind` "
    "what failed; nothing was saved")}}


class MailboxIn(S._In):
    """A mailbox to connect with a password (or app password)."""

    provider: Annotated[str, Field(max_length=64, description="a preset id (providers)")]
    email: S.Email
    password: Annotated[str, Field(min_length=1, max_length=1000)]
    username: S.Text = ""
    host: S.Text = ""
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
    security: Security | None = None
    smtp_host: S.Text = ""
    smtp_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    smtp_security: Security | None = None
    folders: Annotated[list[FolderName], Field(default_factory=list, max_length=200)]
    scope: Literal["all", "known"] = "all"
    on_archive: Literal["none", "archive", "delete"] = "none"


class SubmissionIn(S._In):
    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
    security: Security | None = None


class MailboxPatch(S._In):
    """Only the fields given change; ``folders: []`` means all mail; ``smtp: null`` removes
    the submission settings."""

    folders: Annotated[list[FolderName] | None, Field(max_length=200)] = None
    scope: Literal["all", "known"] | None = None
    on_archive: Literal["none", "archive", "delete"] | None = None
    smtp: SubmissionIn | None = None
    remove_smtp: bool = False


class ConsentIn(S._In):
    mailbox_id: Annotated[int | None, Field(ge=1, le=S.MAX_ID,
                                            description="sign in again to this mailbox")] = None


def _login_failed(exc: LoginFailed) -> JSONResponse:
    return problem(422, str(exc), kind=exc.kind)


@router.get("/me/mailboxes/providers", operation_id="listMailboxProviders")
async def providers(request: Request, p: Caller) -> dict[str, Any]:
    """The provider presets and the OAuth providers this server is set up for."""
    settings = services_of(request).settings
    configured = {q.name: q.label for q in oauth.configured(settings)}
    return {"presets": [{**x.as_dict(), "oauth_available": x.oauth in configured}
                        for x in presets.presets()],
            "oauth": [{"name": k, "label": v} for k, v in configured.items()],
            "redirect_uri": flow.callback_url(services_of(request))}


@router.get("/me/mailboxes", operation_id="listMailboxes")
async def list_mailboxes(request: Request, p: Caller) -> list[dict[str, Any]]:
    db = services_of(request).db

    def work() -> list[dict[str, Any]]:
        with db.read() as s:
            return accounts.list_accounts(s, current_user(s, p).email)

    return await run(request, work)


@router.post("/me/mailboxes", status_code=201, operation_id="connectMailbox",
             responses={**LOGIN_FAILED, **CONFLICT})
async def connect_mailbox(request: Request, p: Caller, body: MailboxIn) -> Any:
    """Log in, list the folders, and only then save the mailbox."""
    form = connect.PasswordForm(
        preset=body.provider, email=body.email, password=body.password, username=body.username,
        host=body.host, port=body.port, security=body.security or "", smtp_host=body.smtp_host,
        smtp_port=body.smtp_port, smtp_security=body.smtp_security or "",
        folders=tuple(body.folders), scope=body.scope, on_archive=body.on_archive)
    try:
        shown, found = await flow.connect_password(services_of(request), p.user_id, form)
    except LoginFailed as exc:
        return _login_failed(exc)
    return JSONResponse({**shown, "server_folders": [f.name for f in found if f.selectable]},
                        status_code=201)


@router.post("/me/mailboxes/oauth/{provider}", operation_id="startMailboxConsent",
             responses=NOT_FOUND)
async def start_consent(request: Request, p: Caller,
                        provider: Annotated[str, Path(max_length=64)],
                        body: ConsentIn | None = None) -> dict[str, Any]:
    """The provider's consent URL (authorization code with PKCE and ``state``); the
    browser that opens it comes back to ``/oauth/callback``, which saves the mailbox."""
    url = await flow.start_consent(services_of(request), p.user_id, provider,
                                   body.mailbox_id if body else None)
    return {"authorize_url": url, "redirect_uri": flow.callback_url(services_of(request))}


@router.get("/me/mailboxes/{mailbox_id:int}", operation_id="getMailbox", responses=NOT_FOUND)
async def get_mailbox(request: Request, p: Caller, mailbox_id: IdPath) -> dict[str, Any]:
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.read() as s:
            return accounts.show_account(s, connect.owned(s, current_user(s, p), mailbox_id))

    return await run(request, work)


@router.get("/me/mailboxes/{mailbox_id:int}/folders", operation_id="listMailboxFolders",
            responses={**NOT_FOUND, **LOGIN_FAILED})
async def mailbox_folders(request: Request, p: Caller, mailbox_id: IdPath) -> Any:
    """The folders (Gmail: labels) the server lists now, to choose from."""
    try:
        found = await flow.folders(services_of(request), p.user_id, mailbox_id)
    except LoginFailed as exc:
        return _login_failed(exc)
    return [{"name": f.name, "special": f.special or None, "selectable": f.selectable} for f in found]


@router.patch("/me/mailboxes/{mailbox_id:int}", operation_id="updateMailbox",
              responses={**NOT_FOUND, **LOGIN_FAILED})
async def update_mailbox(request: Request, p: Caller, mailbox_id: IdPath, body: MailboxPatch) -> Any:
    changes: dict[str, Any] = {}
    if body.folders is not None:
        changes["folders"] = list(dict.fromkeys(body.folders))
    if body.scope is not None:
        changes["scope"] = body.scope
    if body.on_archive is not None:
        changes["on_archive"] = body.on_archive
    if body.remove_smtp:
        changes["smtp"] = None
    elif body.smtp is not None:
        changes["smtp"] = accounts.submission(body.smtp.host, body.smtp.port, body.smtp.security)
    try:
        return await flow.update(services_of(request), p.user_id, mailbox_id, changes)
    except LoginFailed as exc:
        return _login_failed(exc)


@router.delete("/me/mailboxes/{mailbox_id:int}", operation_id="removeMailbox", responses=NOT_FOUND)
async def remove_mailbox(request: Request, p: Caller, mailbox_id: IdPath,
                         delete_mail: Annotated[bool, Query(
                             description="also delete mail that came only from this mailbox")] = False
                         ) -> dict[str, Any]:
    """Stop syncing at once and remove the mailbox; its mail stays unless ``delete_mail``."""
    return await flow.remove(services_of(request), p.user_id, mailbox_id, delete_mail=delete_mail)


@router.get("/admin/mailboxes", operation_id="listCompanyMailboxes", responses=FORBIDDEN)
async def company_mailboxes(request: Request, p: Admin) -> list[dict[str, Any]]:
    """Every mailbox of the admin's company with its state (never its mail)."""
    db = services_of(request).db

    def work() -> list[dict[str, Any]]:
        with db.read() as s:
            return connect.company_mailboxes(s, current_user(s, p))

    return await run(request, work)
