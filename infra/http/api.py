"""The JSON API: events in; caseload, returns, explanations, alerts, tokens and audit out.

Every route but ``/health``, ``/ready`` and the OpenAPI document needs a bearer token, and
checks the token's role and scope (in :mod:`infra.http.services`) before it reads anything.
Path and query parameters are constrained by patterns and ranges that the OpenAPI document
publishes, so no control character or absurd number reaches a query.
"""

# No `from __future__ import annotations`: FastAPI reads these routes' annotations at
# run time, and they name a dependency alias local to the router's factory.
import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from infra.http.access import AREA_PATTERN, VLO_PATTERN, Principal, Role
from infra.http.services import Services, actor_of, parse_day, parse_moment

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token issued by `mappa tokens issue` (or POST /tokens): "
    "`Authorization: Bearer mappa_...`",
)

# Printable text only: no control characters (PostgreSQL refuses NUL in text).
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
AreaCode = Annotated[str, Path(pattern=f"^{AREA_PATTERN}$", description="a MAPPA area code")]
Year = Annotated[int, Path(ge=1900, le=2999, description="first calendar year: 2004 = 2004/05")]
Layout = Annotated[Literal["2004", "2008"] | None, Query(description="default: by year")]
AsKnownOn = Annotated[
    str | None,
    Query(
        alias="asKnownOn",
        max_length=40,
        description="count only what was recorded by then (ISO 8601 moment with offset)",
    ),
]

EVENTS_BODY_REF = "#/components/schemas/InterchangeBatch"
QUERY_ID_PATTERN = r"^[0-9a-fA-F-]{1,40}:[a-z-]{1,64}$"
TEXT_FORMATS = {
    "md": "text/markdown; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}


def _content(*types: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {t: {} for t in types}}}


class DocumentResult(BaseModel):
    index: int = Field(description="the document's place in the request, from 0")
    eventId: str | None
    verdict: Literal["accepted", "duplicate", "rejected"]
    message: str | None = Field(description="why it was rejected: the field and the problem")
    queries: list[str] = Field(description="data-quality queries this document raised")


class IngestResponse(BaseModel):
    accepted: int
    duplicate: int
    rejected: int
    queried: int
    results: list[DocumentResult]


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=2000, pattern=PRINTABLE, description="why")


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    scope: str | None = Field(
        default=None,
        max_length=100,
        pattern=PRINTABLE,
        description="sender: AGENCY:AREA; vlo: a VLO reference; unit: an area; analyst: * "
        "or an area; admin: * or absent",
    )
    name: str = Field(min_length=1, max_length=100, pattern=PRINTABLE)


def authenticated(services: Services) -> Callable[..., Principal]:
    """The dependency that turns a bearer token into a :class:`Principal` (or 401/429)."""

    def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        secret = credentials.credentials if credentials else None
        found = services.authenticate(secret, client_address(request))
        request.state.token_id = found.token_id
        return found

    return principal


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def api_router(services: Services) -> APIRouter:
    router = APIRouter()
    Caller = Annotated[Principal, Depends(authenticated(services))]

    @router.get("/health", tags=["service"], summary="The process is up (no token needed)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        tags=["service"],
        summary="The stores answer (no token needed)",
        responses={503: {"description": "a store does not answer"}},
    )
    def ready() -> JSONResponse:
        try:
            with services.tracker.views.transaction() as tx:
                tx.execute("SELECT 1")
                tx.fetchone()
            services.tracker.max_notification_id()
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @router.post(
        "/events",
        tags=["events"],
        summary="Ingest one interchange document or a list of them (role sender)",
        description="Validated and decided exactly as a file or Kafka message is; each "
        "document gets its verdict. A sender may only send documents whose source.agency and "
        "area are its scope's: a request with any other is refused whole (403).",
        response_model=IngestResponse,
        responses={
            400: {"description": "the body is not JSON, or neither a document nor a list"},
            413: {"description": "the body or the batch is larger than allowed"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": EVENTS_BODY_REF}}},
            }
        },
    )
    async def post_events(request: Request, caller: Caller) -> JSONResponse:
        raw = await request.body()
        answer = await run_in_threadpool(services.ingest, caller, raw)
        return JSONResponse(answer.to_json())

    @router.get(
        "/areas/{area}/caseload",
        tags=["caseload"],
        summary="The live caseload of an area and who is due for release (role unit)",
    )
    def get_caseload(
        area: AreaCode,
        caller: Caller,
        on: Annotated[
            str | None, Query(max_length=10, description="YYYY-MM-DD (default today)")
        ] = None,
        within: Annotated[int, Query(ge=0, le=3660, description="days ahead for releases")] = 90,
    ) -> dict[str, Any]:
        day = parse_day(on) if on else datetime.now(UTC).date()
        return services.caseload(caller, area, day, within)

    @router.get(
        "/areas/{area}/returns/{year}",
        tags=["returns"],
        summary="The 31 March statistical return of an area and year (role analyst)",
        responses=_content("application/json", *TEXT_FORMATS.values()),
    )
    def get_return(
        area: AreaCode,
        year: Year,
        caller: Caller,
        layout: Layout = None,
        as_known_on: AsKnownOn = None,
        format: Literal["json", "md", "csv", "html"] = "json",
    ) -> Response:
        from projections.statistical_return.formats import format_csv, format_html
        from projections.statistical_return.layouts import format_markdown

        moment = parse_moment(as_known_on, "asKnownOn")
        result, name = services.statistical_return(caller, area, year, layout, moment)
        if format == "json":
            return JSONResponse(result)
        if format == "csv":
            return PlainTextResponse(format_csv(result), media_type=TEXT_FORMATS["csv"])
        if format == "html":
            return PlainTextResponse(format_html(result, name), media_type=TEXT_FORMATS["html"])
        return PlainTextResponse(format_markdown(result, name), media_type=TEXT_FORMATS["md"])

    @router.get(
        "/returns/{year}/national",
        tags=["returns"],
        summary="The national overview's tables 1, 2, 3 and 5 (role analyst of every area)",
        responses=_content("application/json", TEXT_FORMATS["md"], TEXT_FORMATS["csv"]),
    )
    def get_national(
        year: Year,
        caller: Caller,
        layout: Layout = None,
        as_known_on: AsKnownOn = None,
        format: Literal["json", "md", "csv"] = "json",
    ) -> Response:
        from projections.statistical_return.national import (
            format_national_csv,
            format_national_markdown,
        )

        moment = parse_moment(as_known_on, "asKnownOn")
        tables = services.national(caller, year, layout, moment)
        if format == "json":
            return JSONResponse(tables)
        if format == "csv":
            return PlainTextResponse(format_national_csv(tables), media_type=TEXT_FORMATS["csv"])
        return PlainTextResponse(format_national_markdown(tables), media_type=TEXT_FORMATS["md"])

    @router.get(
        "/areas/{area}/returns/{year}/explain",
        tags=["returns"],
        summary="The offenders (and events) behind one figure of a return (role analyst)",
        responses=_content("application/json", TEXT_FORMATS["text"]),
    )
    def get_explanation(
        area: AreaCode,
        year: Year,
        caller: Caller,
        figure: Annotated[
            str,
            Query(
                max_length=120,
                pattern=PRINTABLE,
                description="i, i_by_bcu.Hereford, iii.c, viii.level3.cat1, ix.level2.a, ...",
            ),
        ],
        layout: Layout = None,
        as_known_on: AsKnownOn = None,
        format: Literal["json", "text"] = "json",
    ) -> Response:
        from projections.statistical_return.explain import format_explanation_text

        moment = parse_moment(as_known_on, "asKnownOn")
        explanation = services.explain(caller, area, year, figure, layout, moment)
        if format == "json":
            return JSONResponse(explanation.to_json())
        return PlainTextResponse(
            format_explanation_text(explanation), media_type=TEXT_FORMATS["text"]
        )

    @router.get(
        "/areas/{area}/returns/{year}/diff",
        tags=["returns"],
        summary="Each figure that differs between two as-known-on moments, and the events "
        "recorded in between that moved it (role analyst)",
        responses=_content("application/json", TEXT_FORMATS["text"]),
    )
    def get_diff(
        area: AreaCode,
        year: Year,
        caller: Caller,
        a: Annotated[str, Query(max_length=40, description="an ISO 8601 moment, or now")],
        b: Annotated[str, Query(max_length=40, description="an ISO 8601 moment, or now")],
        layout: Layout = None,
        format: Literal["json", "text"] = "json",
    ) -> Response:
        from projections.statistical_return.explain import format_diff_text

        first = parse_moment(a, "a", now_allowed=True)
        second = parse_moment(b, "b", now_allowed=True)
        changes = services.diff(caller, area, year, layout, first, second)
        if format == "text":
            return PlainTextResponse(
                format_diff_text(changes, area, year, a, b), media_type=TEXT_FORMATS["text"]
            )
        return JSONResponse(
            {
                "area": area,
                "year": year,
                "a": None if first is None else first.isoformat(),
                "b": None if second is None else second.isoformat(),
                "changes": [change.to_json() for change in changes],
            }
        )

    @router.get(
        "/vlos/{vlo}/alerts",
        tags=["alerts"],
        summary="A victim liaison officer's alerts, oldest first (role vlo, own alerts only)",
    )
    def get_alerts(
        vlo: Annotated[str, Path(pattern=f"^{VLO_PATTERN}$")],
        caller: Caller,
        include_done: Annotated[
            bool, Query(alias="all", description="done alerts too (the history)")
        ] = False,
    ) -> dict[str, Any]:
        alerts = services.alerts(caller, vlo, include_done)
        return {"recipient": vlo, "alerts": [alert.to_json() for alert in alerts]}

    @router.post(
        "/alerts/{alert_id}/done",
        tags=["alerts"],
        summary="Mark one of your alerts done (role vlo)",
    )
    def post_alert_done(
        alert_id: Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{1,64}$")], caller: Caller
    ) -> dict[str, Any]:
        changed = services.mark_done(caller, alert_id)
        return {"alertId": alert_id, "done": True, "changed": changed, "by": caller.name}

    if data_quality_installed():
        _add_query_routes(router, services, Caller)

    @router.get("/tokens", tags=["tokens"], summary="Every token issued, revoked ones too (admin)")
    def get_tokens(caller: Caller) -> list[dict[str, Any]]:
        services.require_admin(caller, "token.list", "tokens")
        return [record.to_json() for record in services.list_tokens(actor_of(caller))]

    @router.post(
        "/tokens",
        tags=["tokens"],
        status_code=201,
        summary="Issue a token; its secret is in this answer and nowhere else (admin)",
    )
    def post_token(request: TokenRequest, caller: Caller) -> dict[str, Any]:
        services.require_admin(caller, "token.issue", "tokens")
        issued = services.issue_token(actor_of(caller), request.role, request.scope, request.name)
        return {**issued.record.to_json(), "token": issued.secret}

    @router.post(
        "/tokens/{token_id}/revoke",
        tags=["tokens"],
        summary="Revoke a token, at once (admin)",
        responses={404: {"description": "no such token"}},
    )
    def post_revoke(
        token_id: Annotated[str, Path(pattern=r"^tok_[0-9a-f]{1,32}$")], caller: Caller
    ) -> JSONResponse:
        services.require_admin(caller, "token.revoke", f"token:{token_id}")
        record = services.revoke_token(actor_of(caller), token_id)
        if record is None:
            return JSONResponse({"detail": "no such token"}, status_code=404)
        return JSONResponse(record.to_json())

    @router.get("/audit", tags=["audit"], summary="The audit trail, oldest first (admin)")
    def get_audit(
        caller: Caller,
        after: Annotated[int, Query(ge=0, le=2**62, description="after this sequence")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        services.require_admin(caller, "audit.read", "audit")
        return [entry.to_json() for entry in services.audit_entries(actor_of(caller), after, limit)]

    return router


def data_quality_installed() -> bool:
    """Whether this build has the data-quality projection (its routes are added if so)."""
    return importlib.util.find_spec("projections.data_quality.projection") is not None


def _add_query_routes(router: APIRouter, services: Services, caller: Any) -> None:
    @router.get(
        "/areas/{area}/queries",
        tags=["queries"],
        summary="An area's data-quality queries, oldest first (role unit)",
    )
    def get_queries(
        area: AreaCode,
        principal: caller,
        include_ended: Annotated[
            bool, Query(alias="all", description="cleared and closed queries too")
        ] = False,
    ) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [q.to_json(now) for q in services.queries(principal, area, include_ended)]

    @router.post(
        "/areas/{area}/queries/{query_id}/close",
        tags=["queries"],
        summary="Close one of the area's open queries with a note (role unit)",
    )
    def post_query_close(
        area: AreaCode,
        query_id: Annotated[str, Path(pattern=QUERY_ID_PATTERN)],
        request: CloseRequest,
        principal: caller,
    ) -> dict[str, Any]:
        outcome = services.close_query(principal, area, query_id, request.note)
        return {"queryId": query_id, "outcome": outcome, "by": principal.name}
