"""``/api/v1/me/templates…`` (SPEC §12): the caller's mail templates and the company's
shared ones; rendering one with the smart fields of a person, deal, lead or project.

The rules are ``compose.templates`` (also the CLI's ``bccd template``): a template naming
an unknown field is ``400`` naming it; only admins share; another user's private
template is ``404``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from bccd.compose import templates
from bccd.errors import Invalid
from bccd.web.api import schemas_compose as C
from bccd.web.api.core import (
    FORBIDDEN,
    NOT_FOUND,
    Caller,
    IdPath,
    current_user,
    run,
    services_of,
)

router = APIRouter(tags=["templates"])


class FieldError(Invalid):
    """A template that is not text and smart fields: 400 (SPEC §12)."""

    status = 400


def _fields(fn: Any) -> Any:
    try:
        return fn()
    except Invalid as exc:
        if type(exc) is Invalid:
            raise FieldError(str(exc)) from None
        raise


@router.get("/me/templates", response_model=list[C.TemplateOut], operation_id="listTemplates")
async def list_templates(request: Request, p: Caller) -> list[dict[str, Any]]:
    """The caller's templates and the ones shared with the company."""
    db = services_of(request).db

    def work() -> list[dict[str, Any]]:
        with db.read() as s:
            return templates.list_for(s, current_user(s, p))

    return await run(request, work)


@router.post("/me/templates", response_model=C.TemplateOut, status_code=201,
             operation_id="addTemplate", responses=FORBIDDEN)
async def add_template(request: Request, p: Caller, body: C.TemplateIn) -> dict[str, Any]:
    """Save a template; ``{{person.first_name | default("there")}}`` and the other smart
    fields are filled in when it is used."""
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            user = current_user(s, p)
            t = _fields(lambda: templates.add(s, user, name=body.name, subject=body.subject,
                                              html=body.html, shared=body.shared))
            return templates.shape(t, user.email)

    return await run(request, work)


@router.patch("/me/templates/{template_id}", response_model=C.TemplateOut,
              operation_id="updateTemplate", responses={**NOT_FOUND, **FORBIDDEN})
async def update_template(request: Request, p: Caller, template_id: IdPath,
                          body: C.TemplatePatch) -> dict[str, Any]:
    db = services_of(request).db

    def work() -> dict[str, Any]:
        with db.transaction() as s:
            user = current_user(s, p)
            t = _fields(lambda: templates.update(s, user, template_id, name=body.name,
                                                 subject=body.subject, html=body.html,
                                                 shared=body.shared))
            return templates.shape(t, templates.owner_email(s, t))

    return await run(request, work)


@router.delete("/me/templates/{template_id}", status_code=204, response_class=Response,
               operation_id="removeTemplate", responses={**NOT_FOUND, **FORBIDDEN})
async def remove_template(request: Request, p: Caller, template_id: IdPath) -> Response:
    db = services_of(request).db

    def work() -> None:
        with db.transaction() as s:
            templates.remove(s, current_user(s, p), template_id)

    await run(request, work)
    return Response(status_code=204)


@router.post("/me/templates/{template_id}/render", response_model=C.Rendered,
             operation_id="renderTemplate", responses=NOT_FOUND)
async def render_template(request: Request, p: Caller, template_id: IdPath,
                          body: C.RenderIn) -> dict[str, Any]:
    """The template filled in for a person, organization, deal, lead or project (a deal,
    lead or project brings its person and organization unless they are given)."""
    db = services_of(request).db

    def work() -> dict[str, str]:
        with db.read() as s:
            return templates.render(s, current_user(s, p), template_id, field="id",
                                    **body.model_dump())

    return await run(request, work)
