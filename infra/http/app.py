"""The HTTP service's application factory: ``create_app(tracker)`` wires the routes, the
pages, the error answers and the limits around an already-built tracker.

Nothing connects at import; :func:`create_app` creates the ``tokens`` and ``audit_trail``
tables if missing (through the tracker's views port) and that is all it touches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response

from consumers.interchange import json_schema
from infra.bootstrap import Tracker
from infra.http.access import InvalidScope
from infra.http.api import EVENTS_BODY_REF, api_router
from infra.http.limits import GuardMiddleware, TooManyRequests
from infra.http.pages import LoginRequired, error_page, pages_router
from infra.http.services import (
    BadRequest,
    Forbidden,
    Limits,
    PayloadTooLarge,
    Services,
    Unauthenticated,
)

FORBIDDEN = {"detail": "forbidden"}
UNAUTHENTICATED = {"detail": "a valid bearer token is required"}
# Pages get these headers too: no script may run, nothing may frame them, nothing is cached.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


def limits_of(tracker: Tracker) -> Limits:
    settings = tracker.settings
    return Limits(
        max_body_bytes=settings.http_max_body_bytes,
        max_batch=settings.http_max_batch,
        rate_per_minute=settings.http_rate_per_minute,
    )


def create_app(
    tracker: Tracker,
    *,
    limits: Limits | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The service over ``tracker`` (which the caller opens and closes)."""
    services = Services(tracker, limits or limits_of(tracker), clock)
    services.create_tables()
    app = FastAPI(
        title="MAPPA offender lifecycle tracker",
        version="1",
        description="Events in (the interchange format, version 1); the live caseload, the "
        "31 March statistical return, victim alerts and the audit trail out. Every route "
        "but /health, /ready, /login and this document needs a token.",
        docs_url=None,  # the interactive docs need scripts from a CDN; the pages allow none
        redoc_url=None,
    )
    app.state.services = services
    app.include_router(api_router(services))
    app.include_router(pages_router(services))
    _add_error_answers(app, services)
    # The last added is outermost: every answer, the guard's own 413 and 500 too, gets the
    # security headers.
    app.add_middleware(GuardMiddleware, max_body_bytes=services.limits.max_body_bytes)
    app.add_middleware(_SecurityHeaders)
    app.openapi = _openapi(app, services.limits.max_batch)  # type: ignore[method-assign]
    return app


def _is_page(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/pages") or path in ("/login", "/logout", "/")


def _add_error_answers(app: FastAPI, services: Services) -> None:
    async def forbidden(request: Request, _: Exception) -> Response:
        # One body for "not yours" and "no such thing": nothing is revealed either way.
        if _is_page(request):
            return error_page(403, "Not allowed", "This page is not yours to see.")
        return JSONResponse(FORBIDDEN, status_code=403)

    async def unauthenticated(request: Request, _: Exception) -> Response:
        return JSONResponse(
            UNAUTHENTICATED, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    async def login_required(request: Request, _: Exception) -> Response:
        return RedirectResponse("/login", status_code=303)

    async def too_many(request: Request, error: Exception) -> Response:
        assert isinstance(error, TooManyRequests)
        return JSONResponse(
            {"detail": f"too many requests: at most {error.per_minute} a minute per token"},
            status_code=429,
            headers={"Retry-After": str(error.retry_after)},
        )

    async def bad_request(request: Request, error: Exception) -> Response:
        if _is_page(request):
            return error_page(400, "Cannot show that", str(error))
        return JSONResponse({"detail": str(error)}, status_code=400)

    async def too_large(request: Request, error: Exception) -> Response:
        return JSONResponse({"detail": str(error)}, status_code=413)

    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(Unauthenticated, unauthenticated)
    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(TooManyRequests, too_many)
    app.add_exception_handler(BadRequest, bad_request)
    app.add_exception_handler(InvalidScope, bad_request)
    app.add_exception_handler(PayloadTooLarge, too_large)


class _SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.encode(), value.encode())
                    for name, value in SECURITY_HEADERS.items()
                    if name.encode() not in present
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _openapi(app: FastAPI, max_batch: int) -> Callable[[], dict[str, Any]]:
    """The generated document, plus the interchange format's JSON Schema as the body of
    POST /events (the route reads its body itself, to answer as every ingest path does)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        interchange = json_schema()
        # Move the interchange schema's $defs into the document's components, prefixed so
        # they cannot collide with the API's own models.
        text = json.dumps(interchange).replace('"#/$defs/', '"#/components/schemas/Interchange')
        moved = json.loads(text)
        for name, definition in moved.pop("$defs").items():
            schemas[f"Interchange{name}"] = definition
        schemas["InterchangeDocument"] = moved
        schemas[EVENTS_BODY_REF.rsplit("/", 1)[-1]] = {
            "title": "One interchange document, or a list of them",
            "oneOf": [
                {"$ref": "#/components/schemas/InterchangeDocument"},
                {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/InterchangeDocument"},
                    "maxItems": max_batch,
                },
            ],
        }
        app.openapi_schema = document
        return document

    return build
