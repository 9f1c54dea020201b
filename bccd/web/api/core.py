"""The API's frame: the FastAPI application, authentication and problem details.

Why FastAPI, mounted at ``/api/v1`` inside the Starlette app: it is Starlette underneath
(same event loop, same uvicorn server, no second HTTP stack), and it derives the OpenAPI
document *and* request validation from the same pydantic models (``api.schemas``), so
what ``/api/v1/openapi.json`` promises is what the code checks — a hand-written document
beside a hand-written validator would drift. The confirmation page, the Mail page,
``/healthz`` and ``/metrics`` stay plain Starlette routes outside it.

Authentication (SPEC §9): ``Authorization: Bearer <API token>``. Missing, malformed,
unknown, or a disabled user's token → 401 with ``WWW-Authenticate: Bearer realm="bccd"``
(``error="invalid_token"`` when one was given). Admin routes need an admin's token (403
otherwise) and act within the admin's own company.

Errors are RFC 9457 problem details (``application/problem+json``): ``bccd.errors`` map
to their status with their one-line reason (``TooSoon`` → 429 with ``Retry-After``),
request validation to 422 with the offending fields in ``errors``, unknown routes to 404,
unexpected failures to a 500 that says nothing of the internals (the log has them).
Nothing here reveals whether a thread the caller may not see exists: that is decided in
the read models (``NotFound`` for both).

Every handler does its database work in one blocking function run through
``Database.run``; the event loop never blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from bccd.accounts import user_by_api_token
from bccd.errors import BccdError, Invalid
from bccd.log import get_logger
from bccd.store.models import User
from bccd.web.api.schemas import MAX_ID, Problem, _storable

if TYPE_CHECKING:
    from bccd.runtime import Services

log = get_logger("bccd.api")

T = TypeVar("T")
PROBLEM = "application/problem+json"
MAX_TOKEN = 512

bearer = HTTPBearer(auto_error=False, scheme_name="apiToken",
                    description="the user's API token (`bccd user create` prints it once)")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    company_id: int
    is_admin: bool
    email: str


class Unauthorized(Exception):
    def __init__(self, detail: str, *, invalid: bool) -> None:
        super().__init__(detail)
        self.invalid = invalid


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase,
                            "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM)


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem_response("the request body is not valid JSON"),
    401: _problem_response("missing or invalid API token"),
    422: _problem_response("the request is not valid"),
}
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: _problem_response("no such object, or not visible to this user")}
FORBIDDEN: Responses = {403: _problem_response("not allowed for this user")}
CONFLICT: Responses = {409: _problem_response("conflicts with the current state")}
TOO_SOON: Responses = {429: _problem_response("rate-limited; see Retry-After")}


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def run(request: Request, fn: Callable[..., T], *args: Any) -> T:
    return await services_of(request).db.run(fn, *args)


def _lookup(services: Services, token: str) -> Principal | None:
    with services.db.read() as s:
        user = user_by_api_token(s, token)
        if user is None:
            return None
        return Principal(user.id, user.company_id, user.is_admin, user.email)


async def principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if creds is None or not creds.credentials:
        raise Unauthorized("an API token is required: send `Authorization: Bearer <token>`",
                           invalid=False)
    token = creds.credentials.strip()
    if len(token) > MAX_TOKEN:
        raise Unauthorized("the API token is not valid", invalid=True)
    services = services_of(request)
    found = await services.db.run(_lookup, services, token)
    if found is None:
        raise Unauthorized("the API token is not valid (unknown, replaced, or its user is disabled)",
                           invalid=True)
    return found


# the parameters every router declares: the authenticated caller, and a row id in the path
Caller = Annotated[Principal, Depends(principal)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


class AdminRequired(BccdError):
    status = 403


async def admin(p: Caller) -> Principal:
    if not p.is_admin:
        raise AdminRequired("this needs an admin's API token")
    return p


def param(value: str, name: str) -> str:
    """A path or query string, refused (422) if no database could store it."""
    try:
        return _storable(value)
    except ValueError as exc:
        raise Invalid(f"{name}: {exc}") from None


def current_user(s: Session, p: Principal) -> User:
    """The caller's ``User`` in this session (refused if disabled meanwhile)."""
    user = s.get(User, p.user_id)
    if user is None or user.disabled:
        raise Unauthorized("the API token is not valid (its user is disabled)", invalid=True)
    return user


def _on_unauthorized(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unauthorized)
    challenge = 'Bearer realm="bccd"' + (', error="invalid_token"' if exc.invalid else "")
    return problem(401, str(exc), headers={"WWW-Authenticate": challenge})


def _on_bccd_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BccdError)
    headers = None
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers = {"Retry-After": str(int(retry_after))}
    status = exc.status if exc.status in (400, 403, 404, 409, 422, 429) else 400
    return problem(status, str(exc), headers=headers)


def _loc(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)] if isinstance(loc, list | tuple) else [str(loc)]
    return ".".join(parts) or "body"


def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
              for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    detail = f"{_loc(first['loc'])}: {first['msg']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return problem(422, detail, errors=errors)


def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        detail = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
    elif exc.status_code == 400 and "parsing the body" in detail:
        detail = "the request body is not valid JSON"
    return problem(exc.status_code, detail, headers=headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _on_integrity(request: Request, exc: Exception) -> JSONResponse:
    log.info("api_conflict", path=request.url.path, error=str(exc).splitlines()[0][:200])
    return problem(409, "the change conflicts with a concurrent one; repeat the request")


def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("api_error", path=request.url.path, method=request.method, exc_info=exc)
    return problem(500, "internal error; the server log has the details")


def install(api: FastAPI) -> None:
    """The API's frame on a FastAPI app: every error as a problem document, the headers
    every answer carries, and the ``Problem`` schema in the OpenAPI document."""
    api.add_exception_handler(Unauthorized, _on_unauthorized)
    api.add_exception_handler(BccdError, _on_bccd_error)
    api.add_exception_handler(RequestValidationError, _on_validation)
    api.add_exception_handler(StarletteHTTPException, _on_http)
    api.add_exception_handler(IntegrityError, _on_integrity)
    api.add_exception_handler(Exception, _on_unexpected)

    @api.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Any]) -> Any:
        # request bodies are limited in front of everything (bccd.web.limits)
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    _problem_schema(api)


def _problem_schema(api: FastAPI) -> None:
    """Add the ``Problem`` schema the error responses refer to."""
    original = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema:
            return api.openapi_schema
        schema = original()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        # FastAPI adds its own 422 shape; ours is a problem document
        for path in schema.get("paths", {}).values():
            for op in path.values():
                resp = op.get("responses", {}).get("422")
                if resp is not None:
                    op["responses"]["422"] = _problem_response("the request is not valid")
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        api.openapi_schema = schema
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
