"""The OpenAPI document: security schemes and the error answers, added to every route by one rule set.

Routers declare only what is particular to them; this module adds what follows from a route's shape, so that
Swagger UI at ``/docs`` shows "Authorize" and every operation lists the errors it can answer:

* a route that checks a server API key (it depends on ``current_principal``, as ``require(scope)`` does) gets the
  ``ApiKey`` bearer scheme and 401 (no valid key) and 403 (key without the scope);
* a Segment-compatible ``/v1/...`` route that declares a 401 gets the ``WriteKey`` HTTP Basic scheme (write key as
  the user name, empty password; optional, since ``writeKey`` in the body works too); these routes declare every
  answer they give themselves, so the rules below leave them alone;
* 422 (the request does not validate) where a route takes a body, query parameters or typed path parameters, in our
  error format rather than FastAPI's ``HTTPValidationError``;
* 404 where a route has path parameters or a body (bodies name other records: SKUs, channels, customers...);
* 409 on writes (POST, PUT, PATCH, DELETE: duplicates, versions, states);
* any 4xx status that a route's description names (e.g. "410 handoff_expired"), and any the route declares itself.

Every error answer has the ``Error`` schema: ``{code, message, field?, details?}`` (and ``errors`` on a 422).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from omnijourney.api.deps import current_principal

API_KEY, WRITE_KEY = "ApiKey", "WriteKey"
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_DESCRIPTIONS = {
    400: "The call is malformed",
    401: "No valid key: send `Authorization: Bearer <API key>`",
    403: "The key lacks the scope this route needs",
    404: "A record named by the path or the body does not exist",
    409: "Conflicts with the current state (a duplicate, a changed version, a used code...)",
    410: "Gone: it existed but has expired",
    422: "The request does not validate; `field` names the input at fault",
    429: "Too busy: retry after `Retry-After` seconds",
}
_NAMED_STATUS = re.compile(r"\b(4\d\d) `?[a-z]+_[a-z_]+")  # "410 handoff_expired": a status and its error code


class FieldError(BaseModel):
    """One input that did not validate."""

    field: str
    message: str


class Error(BaseModel):
    """Every error answer: a stable ``code``, a readable ``message`` and the ``field`` at fault, if any."""

    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["no customer 01J..."])
    field: str | None = Field(default=None, examples=["customer_id"])
    details: Any | None = None
    errors: list[FieldError] | None = Field(default=None, description="422 only: every input that did not validate")


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route with its effective path, methods and dependencies (FastAPI >= 0.165 keeps included routers
    lazily, as ``_IncludedRouter`` entries of ``app.routes``; older versions copy their routes there)."""
    iter_route_contexts = getattr(routing, "iter_route_contexts", None)
    if iter_route_contexts is None:
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def _depends_on(dependant: Dependant, call: Any) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def _validates(dependant: Dependant) -> bool:
    """Whether a request can fail validation: a body, query, header or cookie parameters, or a path parameter
    that is not plain text."""
    typed_path = any(p.field_info.annotation is not str for p in dependant.path_params)
    return bool(typed_path or dependant.query_params or dependant.header_params or dependant.cookie_params
                or dependant.body_params or any(_validates(d) for d in dependant.dependencies))


def _fastapi_422(answer: dict[str, Any]) -> bool:
    """FastAPI's own 422, added to every route with parameters (even a text path parameter, which always passes)."""
    return "HTTPValidationError" in str(answer.get("content", ""))


def error_statuses(route: Any, operation: dict[str, Any]) -> tuple[set[int], str | None]:
    """The 4xx statuses ``route`` can answer and its security scheme (None: no key), by the rules above."""
    declared = operation.get("responses", {})
    statuses = {int(s) for s, answer in declared.items() if str(s).startswith("4") and not _fastapi_422(answer)}
    scheme = None
    if _depends_on(route.dependant, current_principal):
        scheme = API_KEY
        statuses |= {401, 403}
    elif route.path.startswith("/v1/") and 401 in statuses:
        return statuses, WRITE_KEY  # the Segment-compatible routes declare every answer themselves
    has_body = bool(route.dependant.body_params) or "requestBody" in operation
    if _validates(route.dependant) or has_body:
        statuses.add(422)
    if route.dependant.path_params or has_body:
        statuses.add(404)
    if route.methods & _WRITES:
        statuses.add(409)
    text = f"{operation.get('summary', '')} {operation.get('description', '')}"
    statuses |= {int(s) for s in _NAMED_STATUS.findall(text)}
    return statuses, scheme


def _document(schema: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error_schema = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["Error"] = error_schema
    components["securitySchemes"] = {
        API_KEY: {"type": "http", "scheme": "bearer",
                  "description": "A server API key (`omni keys create`, or the admin key `omni demo` prints): "
                                 "`Authorization: Bearer <key>`."},
        WRITE_KEY: {"type": "http", "scheme": "basic",
                    "description": "A source's write key as the user name, empty password (as Segment's SDKs "
                                   "send it); `writeKey` in the body works too."},
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for route in _api_routes(app):
        if not route.include_in_schema:
            continue
        for method in route.methods:
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            statuses, scheme = error_statuses(route, operation)
            if scheme == API_KEY:
                operation["security"] = [{API_KEY: []}]
            elif scheme == WRITE_KEY:
                operation["security"] = [{WRITE_KEY: []}, {}]  # {}: or none, with writeKey in the body
            responses = operation.setdefault("responses", {})
            if 422 not in statuses:
                responses.pop("422", None)
            for status in sorted(statuses):
                answer = responses.setdefault(str(status), {})
                answer.setdefault("description", _DESCRIPTIONS.get(status, "Error"))
                if status == 422 or "content" not in answer:  # FastAPI's 422 is not our format
                    answer["content"] = error
            operation["responses"] = dict(sorted(responses.items()))
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and unused not in str(schema["paths"]):
            del schemas[unused]
    return schema


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (``/openapi.json``, ``/docs``) declare the key schemes and the error answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, tags=app.openapi_tags, servers=app.servers)
            app.openapi_schema = _document(schema, app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
