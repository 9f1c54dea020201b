"""``/api/v1/admin/…``: what integrators do with an admin's token, within that admin's
company — read and change the company's settings (``/admin/company``: unknown contacts,
its own domains, automated and internal mail, SPEC §5.10), upsert (``PUT``, by
``external_id``) and delete persons, organizations, deals, leads and projects (these drive
retroactive linking, SPEC §5.7), create users and rotate their Smart Bcc address, and see
recent webhook deliveries with their state.

The rules are in ``web.api.upsert`` (CRM), ``bccd.accounts`` (users) and
``bccd.notify.webhooks`` (deliveries); this module validates and renders.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from bccd import accounts
from bccd.errors import NotFound
from bccd.mailstore import shapes as render
from bccd.notify import webhooks
from bccd.store.models import Company, User
from bccd.web.api import schemas as S
from bccd.web.api import upsert
from bccd.web.api.core import (
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    IdPath,
    Principal,
    admin,
    param,
    run,
    services_of,
)

router = APIRouter(prefix="/admin", tags=["admin"], responses=FORBIDDEN)
Admin = Annotated[Principal, Depends(admin)]
ExternalId = Annotated[str, Path(min_length=1, max_length=255,
                                 description="the integrator's id for this entity")]


def _ext(value: str) -> str:
    return param(value, "external_id")


# ------------------------------------------------------------------ the company
@router.get("/company", response_model=S.CompanyOut, operation_id="getCompany")
async def get_company(request: Request, p: Admin) -> dict[str, Any]:
    """The admin's company and its settings."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.read() as s:
            return render.company(_company(s, p.company_id), s)

    return await run(request, work)


@router.patch("/company", response_model=S.CompanyOut, operation_id="updateCompany")
async def update_company(request: Request, p: Admin, body: S.CompanyPatch) -> dict[str, Any]:
    """Change the settings given (SPEC §5.10): ``domains`` null or ``[]`` goes back to the
    default, the domains of the company's users' login addresses."""
    db = services_of(request).db
    given = body.model_fields_set

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            company = _company(s, p.company_id)
            accounts.set_company(
                s, company, create_unknown_contacts=body.create_unknown_contacts,
                domains=(body.domains or []) if "domains" in given else None,
                automated_mail=body.automated_mail, internal_mail=body.internal_mail)
            s.flush()
            return render.company(company, s)

    return await run(request, work)


def _company(s: Session, company_id: int) -> Company:
    company = s.get(Company, company_id)
    if company is None:
        raise NotFound("the company no longer exists")
    return company


# ------------------------------------------------------------------ persons
@router.put("/persons/{external_id}", response_model=S.PersonOut, operation_id="upsertPerson",
            responses={**NOT_FOUND, **CONFLICT})
async def put_person(request: Request, p: Admin, external_id: ExternalId,
                     body: S.PersonIn) -> dict[str, Any]:
    """Create or replace the person; new addresses link existing threads (SPEC §5.7)."""
    db = services_of(request).db
    return await run(request, upsert.upsert_person, db, p.company_id, _ext(external_id), body)


@router.get("/persons/{external_id}", response_model=S.PersonOut, operation_id="getPerson",
            responses=NOT_FOUND)
async def get_person(request: Request, p: Admin, external_id: ExternalId) -> dict[str, Any]:
    db = services_of(request).db
    return await run(request, upsert.get_person, db, p.company_id, _ext(external_id))


@router.delete("/persons/{external_id}", status_code=204, response_class=Response,
               operation_id="deletePerson", responses=NOT_FOUND)
async def delete_person(request: Request, p: Admin, external_id: ExternalId) -> Response:
    db = services_of(request).db
    await run(request, upsert.delete_entity, db, p.company_id, "person", _ext(external_id))
    return Response(status_code=204)


# ------------------------------------------------------------------ organizations
@router.put("/organizations/{external_id}", response_model=S.OrganizationOut,
            operation_id="upsertOrganization", responses={**NOT_FOUND, **CONFLICT})
async def put_organization(request: Request, p: Admin, external_id: ExternalId,
                           body: S.OrganizationIn) -> dict[str, Any]:
    db = services_of(request).db
    return await run(request, upsert.upsert_organization, db, p.company_id, _ext(external_id), body)


@router.get("/organizations/{external_id}", response_model=S.OrganizationOut,
            operation_id="getOrganization", responses=NOT_FOUND)
async def get_organization(request: Request, p: Admin, external_id: ExternalId) -> dict[str, Any]:
    db = services_of(request).db
    return await run(request, upsert.get_organization, db, p.company_id, _ext(external_id))


@router.delete("/organizations/{external_id}", status_code=204, response_class=Response,
               operation_id="deleteOrganization", responses=NOT_FOUND)
async def delete_organization(request: Request, p: Admin, external_id: ExternalId) -> Response:
    db = services_of(request).db
    await run(request, upsert.delete_entity, db, p.company_id, "organization", _ext(external_id))
    return Response(status_code=204)


# ------------------------------------------------------------------ deals, leads, projects
def _item_routes(kind: Literal["deal", "lead", "project"]) -> None:
    plural = f"{kind}s"
    cap = kind.capitalize()

    async def put_item(request: Request, p: Admin, external_id: ExternalId,
                       body: S.ItemIn) -> dict[str, Any]:
        services = services_of(request)
        return await run(request, upsert.upsert_item, services.db, services.settings,
                         p.company_id, kind, _ext(external_id), body)

    async def get_item(request: Request, p: Admin, external_id: ExternalId) -> dict[str, Any]:
        services = services_of(request)
        return await run(request, upsert.get_item, services.db, services.settings,
                         p.company_id, kind, _ext(external_id))

    async def delete_item(request: Request, p: Admin, external_id: ExternalId) -> Response:
        db = services_of(request).db
        await run(request, upsert.delete_entity, db, p.company_id, kind, _ext(external_id))
        return Response(status_code=204)

    put_item.__doc__ = (f"Create or replace the {kind}; an open {kind} is linked to its "
                        "person's threads where it is the only candidate (SPEC §5.6).")
    router.add_api_route(f"/{plural}/{{external_id}}", put_item, methods=["PUT"],
                         response_model=S.ItemOut, operation_id=f"upsert{cap}",
                         responses={**NOT_FOUND, **CONFLICT}, summary=f"Upsert a {kind}")
    router.add_api_route(f"/{plural}/{{external_id}}", get_item, methods=["GET"],
                         response_model=S.ItemOut, operation_id=f"get{cap}",
                         responses=NOT_FOUND, summary=f"Get a {kind}")
    router.add_api_route(f"/{plural}/{{external_id}}", delete_item, methods=["DELETE"],
                         status_code=204, response_class=Response, operation_id=f"delete{cap}",
                         responses=NOT_FOUND, summary=f"Delete a {kind}")


_KINDS: tuple[Literal["deal", "lead", "project"], ...] = ("deal", "lead", "project")
for _kind in _KINDS:
    _item_routes(_kind)


# ------------------------------------------------------------------ users
@router.get("/users", response_model=list[S.UserBrief], operation_id="listUsers")
async def list_users(request: Request, p: Admin) -> list[dict[str, Any]]:
    services = services_of(request)

    def work() -> list[dict[str, Any]]:
        with services.db.read() as s:
            q = select(User).where(User.company_id == p.company_id).order_by(User.id)
            return [render.user_brief(u, services.settings) for u in s.scalars(q)]

    return await run(request, work)


@router.post("/users", response_model=S.UserCreated, status_code=201, operation_id="createUser",
             responses=CONFLICT)
async def create_user(request: Request, p: Admin, body: S.UserIn) -> dict[str, Any]:
    """Create a user in the admin's company; the API token is shown only here."""
    services = services_of(request)

    def work() -> dict[str, Any]:
        with services.db.transaction() as s:
            company = s.get(Company, p.company_id)
            if company is None:
                raise NotFound("the company no longer exists")
            new = accounts.create_user(s, body.email, company, name=body.name, admin=body.admin)
            return {"id": new.user.id, "email": new.user.email,
                    "bcc_address": accounts.bcc_address(new.user, services.settings.smtp.bcc_domain),
                    "api_token": new.api_token}

    return await run(request, work)


@router.post("/users/{user_id}/rotate-address", response_model=S.BccAddress,
             operation_id="rotateAddress", responses=NOT_FOUND)
async def rotate_address(request: Request, p: Admin, user_id: IdPath) -> dict[str, Any]:
    """Give the user a new Smart Bcc address; the old one becomes unknown."""
    services = services_of(request)

    def work() -> dict[str, Any]:
        with services.db.transaction() as s:
            user = s.get(User, user_id)
            if user is None or user.company_id != p.company_id:
                raise NotFound(f"no user {user_id}")
            accounts.rotate_address(s, user)
            return {"bcc_address": accounts.bcc_address(user, services.settings.smtp.bcc_domain)}

    return await run(request, work)


# ------------------------------------------------------------------ webhooks
@router.get("/webhooks/deliveries", response_model=list[S.DeliveryOut],
            operation_id="listWebhookDeliveries")
async def list_deliveries(
    request: Request, p: Admin,
    state: Annotated[Literal["pending", "done", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """Recent webhook deliveries of the company's events, newest first, with their state
    (``pending`` includes ones waiting for a retry), attempts and last error."""
    db = services_of(request).db

    def work() -> list[dict[str, Any]]:
        with db.read() as s:
            return [d.as_dict() for d in webhooks.deliveries(s, p.company_id, state=state,
                                                             limit=limit)]

    return await run(request, work)
