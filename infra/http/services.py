"""What the HTTP routes and pages do, apart from HTTP: authenticate, authorise (auditing
every refusal), ingest, and run the read queries, auditing every read of a record.

Every refusal is the same :class:`Forbidden`, raised *before* anything is looked up, so the
answer to "not yours" and to "does not exist" cannot differ: whether a record exists is
never revealed to someone not allowed to see it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import structlog

from consumers.ingest import Result, Summary, Verdict
from consumers.interchange import InvalidDocument, decode_json, parse_object
from domain.offender import ReportedFact
from infra.bootstrap import Tracker
from infra.http.access import IssuedToken, Principal, Role, TokenRecord, TokenStore
from infra.http.audit import (
    ALLOWED,
    DENIED,
    Actor,
    AuditEntry,
    AuditTrail,
    append,
    offenders_named,
)
from infra.http.limits import RateLimiter, TooManyRequests

log = structlog.get_logger("mappa.http")
# Moments and dates outside these years are refused up front: the counting rules' calendar
# arithmetic is only meaningful (and only guaranteed not to overflow) well inside them.
FIRST_YEAR, LAST_YEAR = 1900, 2999


class Unauthenticated(Exception):
    """No token, or not a valid one (unknown or revoked): 401."""


class Forbidden(Exception):
    """Not allowed, or no such record: one answer for both, 403."""


class BadRequest(ValueError):
    """A parameter that cannot be used; the message says why (it names no record)."""


class PayloadTooLarge(Exception):
    """More documents in one request than allowed: 413."""


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_048_576
    max_batch: int = 1000
    rate_per_minute: int = 600


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.token_id, principal.name, principal.role.value)


@dataclass
class IngestAnswer:
    summary: Summary
    results: list[Result]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary.as_dict(),
            "results": [
                {
                    "index": r.item,
                    "eventId": r.event_id,
                    "verdict": r.verdict.value,
                    "message": r.message,
                    "queries": list(r.queries),
                }
                for r in self.results
            ],
        }


class Services:
    """The tracker, the token store, the audit trail and the limits, for one service."""

    def __init__(
        self,
        tracker: Tracker,
        limits: Limits,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.tracker = tracker
        self.limits = limits
        self.clock = clock or (lambda: datetime.now(UTC))
        self.tokens = TokenStore(tracker.views, self.clock)
        self.audit = AuditTrail(tracker.views, self.clock)
        self.limiter = RateLimiter(limits.rate_per_minute)
        # One catch-up at a time: concurrent ones would only queue on the views' locks.
        self._catch_up_lock = threading.Lock()

    def create_tables(self) -> None:
        self.tokens.create_tables()
        self.audit.create_tables()

    @property
    def embedded(self) -> bool:
        """No Kafka pipeline: this process must bring the projections up to date itself."""
        return not self.tracker.settings.kafka_bootstrap

    def catch_up(self) -> None:
        if self.embedded:
            with self._catch_up_lock:
                self.tracker.catch_up()

    # --- who ----------------------------------------------------------------------------

    def authenticate(self, secret: str | None, client: str) -> Principal:
        """The principal holding ``secret``, within its rate; else 401 (or 429)."""
        return self._within_rate(self.tokens.authenticate(secret) if secret else None, client)

    def session_holder(self, secret: str | None, client: str) -> Principal:
        """The principal of the page session ``secret`` (a login cookie), within its rate;
        else 401 (or 429)."""
        return self._within_rate(self.tokens.session_holder(secret) if secret else None, client)

    def _within_rate(self, principal: Principal | None, client: str) -> Principal:
        key = principal.token_id if principal else f"address:{client}"
        wait = self.limiter.take(key)
        if wait:
            raise TooManyRequests(wait, self.limits.rate_per_minute)
        if principal is None:
            raise Unauthenticated
        return principal

    def require(self, principal: Principal, allowed: bool, action: str, target: str) -> None:
        """Go on if ``allowed``; else audit the refusal and raise :class:`Forbidden`."""
        if not allowed:
            self.audit.record(actor_of(principal), action, target, DENIED)
            raise Forbidden

    def record(
        self, principal: Principal, action: str, target: str, detail: dict[str, Any] | None = None
    ) -> None:
        self.audit.record(actor_of(principal), action, target, ALLOWED, detail)

    # --- ingest ---------------------------------------------------------------------------

    def ingest(self, principal: Principal, raw: bytes) -> IngestAnswer:
        """Ingest one document or a list of them, as every ingest path does."""
        self.require(principal, principal.role is Role.SENDER, "events.post", "events")
        try:
            body = decode_json(raw)
        except InvalidDocument as error:
            raise BadRequest(str(error)) from None
        if isinstance(body, dict):
            documents: list[Any] = [body]
        elif isinstance(body, list):
            documents = body
        else:
            raise BadRequest("the body is one interchange document (an object) or a list of them")
        if len(documents) > self.limits.max_batch:
            raise PayloadTooLarge(
                f"{len(documents)} documents in one request: at most {self.limits.max_batch}"
            )
        rejected: list[Result] = []
        batch: list[tuple[int, ReportedFact]] = []
        for index, document in enumerate(documents):
            try:
                batch.append((index, parse_object(document)))
            except InvalidDocument as error:
                rejected.append(Result(index, Verdict.REJECTED, _event_id(document), str(error)))
        # A sender writes for its own agency and area only; a batch with anything else in it
        # is refused whole, so that nothing of it is stored.
        outside = [
            fact
            for _, fact in batch
            if not principal.is_sender_for(
                str(fact.fields["source"].get("agency")), str(fact.fields["area"])
            )
        ]
        self.require(principal, not outside, "events.post", f"scope:{principal.scope}")
        service = self.tracker.ingest_service()
        # Nor may it take back what another agency or area sent: a retraction is refused
        # unless the event it names was sent under the sender's own scope (or is not stored
        # yet: then it is queried, as the contract says, and this cannot be checked).
        targets = {
            str(fact.fields["retracted_event_id"])
            for _, fact in batch
            if "retracted_event_id" in fact.fields
        } - {fact.event_id for _, fact in batch}
        foreign = [
            event_id
            for event_id, (agency, area) in service.senders_of(targets).items()
            if not principal.is_sender_for(agency, area)
        ]
        self.require(principal, not foreign, "events.post", f"scope:{principal.scope}")
        results = service.ingest(batch) if batch else []
        answer = IngestAnswer(Summary(), sorted([*results, *rejected], key=lambda r: r.item))
        for result in answer.results:
            answer.summary.add(result)
        self.record(principal, "events.post", f"scope:{principal.scope}", answer.summary.as_dict())
        try:
            self.catch_up()
        except Exception as error:
            # The documents are stored and their verdicts are the answer: a 500 would tell the
            # sender they were not. The views catch up on the next write or start.
            log.error("projections did not catch up", error_type=type(error).__name__)
        return answer

    # --- reads ---------------------------------------------------------------------------

    def caseload(self, principal: Principal, area: str, on: date, within: int) -> dict[str, Any]:
        from projections.caseload.projection import caseload

        self.require(principal, principal.is_unit_of(area), "caseload.read", f"area:{area}")
        check_day(on)
        with self.tracker.views.transaction() as tx:
            answer: dict[str, Any] = caseload(
                tx, area, on, within, lead_times=self.tracker.areas.lead_time_for
            ).to_json()
            append(tx, self.clock(), actor_of(principal), "caseload.read", f"area:{area}",
                   detail={"offenders": offenders_named(answer)})  # fmt: skip
        return answer

    def statistical_return(
        self,
        principal: Principal,
        area: str,
        year: int,
        layout: str | None,
        as_known_on: datetime | None,
    ) -> tuple[dict[str, Any], str | None]:
        """The return, and the area's name (for the layouts that print it)."""
        from projections.statistical_return.projection import statistical_return

        target = f"area:{area}/year:{year}"
        self.require(principal, principal.is_analyst_of(area), "return.read", target)
        with self.tracker.views.transaction() as tx:
            population = self.tracker.areas.population_for(area, year)
            try:
                result = statistical_return(tx, area, year, layout, as_known_on, population)
            except ValueError as error:
                raise BadRequest(str(error)) from None
            append(tx, self.clock(), actor_of(principal), "return.read", target)
        known = self.tracker.areas.get(area)
        return result, known.name if known else None

    def national(
        self, principal: Principal, year: int, layout: str | None, as_known_on: datetime | None
    ) -> dict[str, Any]:
        from projections.statistical_return.national import (
            national_tables_from_store,
            store_areas,
        )

        target = f"national/year:{year}"
        self.require(principal, principal.is_analyst_of(None), "national.read", target)
        with self.tracker.views.transaction() as tx:
            areas = sorted({*store_areas(tx), *(a.code for a in self.tracker.areas.areas)})
            try:
                tables = national_tables_from_store(
                    tx, areas, year, self.tracker.areas.population_for, layout, as_known_on
                )
            except ValueError as error:
                raise BadRequest(str(error)) from None
            append(tx, self.clock(), actor_of(principal), "national.read", target)
        return tables

    def explain(
        self,
        principal: Principal,
        area: str,
        year: int,
        figure: str,
        layout: str | None,
        as_known_on: datetime | None,
    ) -> Any:
        from projections.statistical_return.explain import (
            UnknownFigure,
            area_histories,
            explain_figure,
        )

        target = f"area:{area}/year:{year}/figure:{figure}"
        self.require(principal, principal.is_analyst_of(area), "explain.read", target)
        with self.tracker.views.transaction() as tx:
            histories = area_histories(tx, area)
        population = self.tracker.areas.population_for(area, year)
        try:
            explanation = explain_figure(
                histories, area, year, figure, layout, as_known_on, population
            )
        except UnknownFigure as error:
            raise BadRequest(str(error)) from None
        offenders = [o.reference for o in explanation.offenders]
        self.record(principal, "explain.read", target, {"offenders": offenders})
        return explanation

    def diff(
        self,
        principal: Principal,
        area: str,
        year: int,
        layout: str | None,
        a: datetime | None,
        b: datetime | None,
    ) -> list[Any]:
        from projections.statistical_return.explain import area_histories, diff_as_known_on

        target = f"area:{area}/year:{year}"
        self.require(principal, principal.is_analyst_of(area), "diff.read", target)
        with self.tracker.views.transaction() as tx:
            histories = area_histories(tx, area)
        population = self.tracker.areas.population_for(area, year)
        try:
            changes = diff_as_known_on(histories, area, year, layout, a, b, population)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        offenders = sorted({o.reference for change in changes for o in change.offenders})
        self.record(principal, "diff.read", target, {"offenders": offenders})
        return changes

    def alerts(self, principal: Principal, vlo: str, include_done: bool) -> list[Any]:
        from projections.victim_alerts.projection import alerts_for

        target = f"vlo:{vlo}"
        self.require(principal, principal.is_vlo(vlo), "alerts.read", target)
        with self.tracker.views.transaction() as tx:
            alerts = alerts_for(tx, vlo, include_done=include_done)
            detail = {
                "alerts": [a.alert.alert_id for a in alerts],
                "offenders": sorted({a.alert.offender_ref for a in alerts}),
            }
            append(tx, self.clock(), actor_of(principal), "alerts.read", target, detail=detail)
        return alerts

    def mark_done(self, principal: Principal, alert_id: str) -> bool:
        """Mark the principal's own alert done (False: it was done already)."""
        from projections.victim_alerts.projection import AlertNotFound, mark_done

        target = f"alert:{alert_id}"
        self.require(principal, principal.role is Role.VLO, "alert.done", target)
        try:
            with self.tracker.views.transaction() as tx:
                changed = mark_done(tx, alert_id, principal.scope, principal.name, self.clock())
                append(tx, self.clock(), actor_of(principal), "alert.done", target,
                       detail={"changed": changed})  # fmt: skip
        except AlertNotFound:
            # Someone else's alert, or none at all: the same refusal for both.
            self.audit.record(actor_of(principal), "alert.done", target, DENIED)
            raise Forbidden from None
        return changed

    # --- data-quality queries (when the data-quality projection is installed) -------------

    def queries(self, principal: Principal, area: str, include_ended: bool) -> list[Any]:
        from projections.data_quality.projection import queries_for

        target = f"area:{area}"
        self.require(principal, principal.is_unit_of(area), "queries.read", target)
        with self.tracker.views.transaction() as tx:
            queries = queries_for(tx, area, include_ended=include_ended)
            detail = {
                "queries": [q.query_id for q in queries],
                "offenders": sorted({q.mappa_ref for q in queries}),
            }
            append(tx, self.clock(), actor_of(principal), "queries.read", target, detail=detail)
        return list(queries)

    def close_query(self, principal: Principal, area: str, query_id: str, note: str) -> str:
        """Close an open query of the unit's area with a note: ``closed``, ``cleared`` or
        ``already closed`` (see the projection)."""
        from projections.data_quality.projection import close_query, query_by_id

        target = f"query:{query_id}"
        self.require(principal, principal.is_unit_of(area), "query.close", target)
        with self.tracker.views.transaction() as tx:
            query = query_by_id(tx, query_id)
            mine = query is not None and query.area == area
            if mine:
                outcome = close_query(tx, query_id, principal.name, note, self.clock())
                append(tx, self.clock(), actor_of(principal), "query.close", target,
                       detail={"outcome": outcome})  # fmt: skip
        # Another area's query, or none at all: the same refusal for both.
        self.require(principal, mine, "query.close", target)
        return outcome

    # --- tokens and the audit trail (admin) -------------------------------------------------

    def require_admin(self, principal: Principal, action: str, target: str) -> None:
        self.require(principal, principal.is_admin, action, target)

    def issue_token(self, by: Actor, role: Role, scope: str | None, name: str) -> IssuedToken:
        """Issue a token (its secret is in the answer only) and audit it, secret left out."""
        issued = self.tokens.issue(role, scope, name, by=f"{by.name} ({by.id})")
        record = issued.record
        self.audit.record(by, "token.issue", f"token:{record.token_id}",
                          detail={"role": record.role, "scope": record.scope,
                                  "name": record.name})  # fmt: skip
        return issued

    def revoke_token(self, by: Actor, token_id: str) -> TokenRecord | None:
        record = self.tokens.revoke(token_id, by=f"{by.name} ({by.id})")
        outcome = ALLOWED if record else "not-found"
        self.audit.record(by, "token.revoke", f"token:{token_id}", outcome)
        return record

    def list_tokens(self, by: Actor) -> list[TokenRecord]:
        self.audit.record(by, "token.list", "tokens")
        return self.tokens.all_tokens()

    def audit_entries(self, by: Actor, after: int, limit: int) -> list[AuditEntry]:
        # Reading the trail is itself on the trail, after the entries it returns.
        entries = self.audit.entries(after, limit)
        self.audit.record(by, "audit.read", "audit", detail={"after": after, "limit": limit})
        return entries


def _event_id(document: Any) -> str | None:
    if isinstance(document, dict) and isinstance(document.get("eventId"), str):
        return str(document["eventId"])[:64]
    return None


def check_day(day: date) -> None:
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise BadRequest(f"dates must fall in the years {FIRST_YEAR} to {LAST_YEAR}")


def parse_moment(text: str | None, name: str, now_allowed: bool = False) -> datetime | None:
    """An ISO 8601 moment with its UTC offset (or ``now`` when allowed: None)."""
    if text is None:
        return None
    if now_allowed and text.strip().lower() == "now":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name}: expected an ISO 8601 moment, got {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name}: give a UTC offset, e.g. 2005-06-30T00:00:00+00:00")
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise BadRequest(f"{name}: moments must fall in the years {FIRST_YEAR} to {LAST_YEAR}")
    return moment


def parse_day(text: str, name: str = "on") -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name}: expected a date YYYY-MM-DD, got {text[:20]!r}") from None
    check_day(day)
    return day
