"""The OpenAPI document, told truthfully: every error a route can answer is listed with
its status code as `application/problem+json` (`wire.Problem`).

Routes declare their answer model and the errors of their own doing with
`**openapi.answer(wire.Model, 404, 409)` (404 for a name that is not there, 409,
410); `document(app)` adds what every route of a kind can answer, because a layer
in front of the handlers answers it:

- 429 with `Retry-After` on everything under /api/ (`ratelimit.RateLimit`);
- 401 and 403 on every route that needs a credential (`security.Allow`, and the
  CSRF check of a session), 404 on those a tenant token may call (another tenant's
  things answer 404, as if absent);
- 400, 413 and 422 on every route that takes a body (bytes that are not JSON,
  `limits.BodyLimit`, validation), and 408 and 503 (a body too slow, or past the
  budget of bodies in flight: `limits.BodyGuard`); 422 on every route with
  parameters (FastAPI's validation, answered as a problem).

It also puts each kind's schema in the components, for the PUT of one resource
(`body_of_kind`).

`install(app)` makes the app serve this document at /api/v1/openapi.json.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute

from armillary import wire
from armillary.api import problems as problem_answers
from armillary.api import security
from armillary.resources import kinds

DESCRIPTIONS = {
    400: "Bad request",
    401: "No credential, or one the server does not accept",
    403: "The credential may not do this",
    404: "Not found",
    408: "The body did not arrive in time; the connection is closed",
    409: "Conflict: the state moved on, or the request clashes with it",
    410: "Gone: handed over once already",
    413: "The body is over the size limit",
    422: "The input is wrong: `errors` names each place",
    429: "Rate limited: retry after `Retry-After` seconds",
    503: "Temporarily unavailable: retry",
}
_TEMPLATE = "#/components/schemas/{model}"
_REF = _TEMPLATE.format(model="Problem")


def declared(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that answers these error statuses itself."""
    return {status: _problem(status) for status in statuses}


def _problem(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status, "Error"),
        "content": {problem_answers.MEDIA_TYPE: {"schema": {"$ref": _REF}}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def answer(
    model: type[BaseModel] | None, *statuses: int, also: dict[int, str] | None = None
) -> dict[str, Any]:
    """Keyword arguments of a route decorator: it answers `model` (sent as the handler
    built it: keys it left out stay out), the error `statuses` of its own doing, and
    `also` other success statuses with the same model (status → when)."""
    responses = declared(*statuses)
    for status, description in (also or {}).items():
        responses[status] = {"description": description, "model": model}
    return {
        "response_model": model,
        "response_model_exclude_unset": True,
        "responses": responses,
    }


def body_of_kind(kind: str) -> dict[str, Any]:
    """`openapi_extra=` of a route whose body is one resource document of `kind`
    (taken as `Any` and checked by `control.apply`, which names each wrong place)."""
    # The kind's model says `kind: string`; at this route only this kind is taken.
    schema = {
        "allOf": [
            {"$ref": f"#/components/schemas/{kind}"},
            {"properties": {"kind": {"const": kind}}},
        ]
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install(app: FastAPI) -> None:
    """Serve `document(app)` (built once) as the app's OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of `app` with every error answer described."""
    schema = get_openapi(
        title=app.title, version=app.version, openapi_version=app.openapi_version, routes=app.routes
    )
    for route in routes(app.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        statuses = _implied(route)
        for method in route.methods or ():
            operation = schema["paths"][route.path_format][method.lower()]
            responses: dict[str, Any] = operation["responses"]
            for status in sorted(statuses):
                responses.setdefault(str(status), _problem(status))
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and _fastapi_default(response):
                    responses[code] = _problem(int(code))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    models: list[tuple[str, type[BaseModel]]] = [("Problem", wire.Problem)]
    models += [(kind.name, kind.model) for kind in kinds.KINDS]
    for name, model in models:
        found = model.model_json_schema(by_alias=True, ref_template=_TEMPLATE)
        for sub, sub_schema in {**found.pop("$defs", {}), name: found}.items():
            if components.setdefault(sub, sub_schema) != sub_schema:
                raise RuntimeError(f"two schemas named {sub!r} in the OpenAPI document")
    return schema


def routes(table: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (FastAPI keeps those in the router;
    an APIRouter's prefix is already part of its routes' paths)."""
    for route in table:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from routes(included.routes)
        else:
            yield route


def _implied(route: APIRoute) -> set[int]:
    """The error statuses layers in front of `route`'s handler can answer."""
    statuses: set[int] = set()
    if route.path_format.startswith("/api/"):
        statuses.add(429)
    rules = [
        d.call.rule for d in _dependencies(route.dependant) if isinstance(d.call, security.Allow)
    ]
    if rules:
        statuses |= {401, 403}
    if any(rule.tenant != "none" for rule in rules):
        statuses.add(404)
    if route.body_field is not None:
        statuses |= {400, 408, 413, 422, 503}  # 400: a body that is not even JSON
    if route.dependant.path_params or route.dependant.query_params:
        statuses.add(422)
    return statuses


def _dependencies(dependant: Dependant) -> list[Dependant]:
    found = []
    for sub in dependant.dependencies:
        found.append(sub)
        found.extend(_dependencies(sub))
    return found


def _fastapi_default(response: dict[str, Any]) -> bool:
    """Whether FastAPI wrote this error answer (its validation error, or a problem
    declared as `model=`, both filed under application/json) rather than a route."""
    content = response.get("content") or {}
    if not content:
        return True
    ref = str(content.get("application/json", {}).get("schema", {}).get("$ref", ""))
    return ref.endswith(("/HTTPValidationError", "/Problem"))
