"""Access control of the HTTP service: every role against every route, on both stores.

A role's allowed routes succeed; every other answers 403 with one fixed body (401 without
a valid token; a page sends the browser to the login form instead), so "not yours" and
"does not exist" cannot be told apart. No answer carries another area's offenders or
another VLO's victims, and no answer to an analyst (or anyone else) carries a victim's
reference that is not theirs to see.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.bootstrap import Tracker, bootstrap
from infra.http.access import Role
from infra.http.api import data_quality_installed
from infra.http.app import FORBIDDEN, UNAUTHENTICATED, create_app
from infra.http.services import Limits, Services
from tests.builders import History
from tests.conftest import BACKENDS, _create_schema, _drop_schema, settings_for
from tests.http_support import (
    OFFENDER_DUR,
    OFFENDER_WM,
    OPERATOR,
    PRINCIPALS,
    VICTIM_DUR,
    VICTIM_WM,
    VLO_DUR,
    VLO_WM,
    Tokens,
    issue_tokens,
    open_alert_ids,
    secrets_in,
    seed,
    world,
)

VALID = frozenset(who for who in PRINCIPALS if who != "revoked")
EVERYONE = frozenset([*PRINCIPALS, "anonymous"])
NO_SUCH_ALERT = "00000000-0000-4000-8000-000000000000"
NO_SUCH_QUERY = "00000000-0000-4000-8000-000000000000:release-without-custody"


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    allowed: frozenset[str]
    body: Any = None
    page: bool = False
    public: bool = False


def _document(ref: str, area: str, agency: str = "prison") -> dict[str, Any]:
    h = History(ref, area=area, namespace=f"matrix-{uuid.uuid4()}")
    document = h.add("custody.received", "2005-01-10T10:00:00+00:00", prison="HMP B",
                     reason="remand")  # fmt: skip
    document["source"]["agency"] = agency
    return document


def routes() -> list[Route]:
    r = [
        Route("health", "GET", "/health", EVERYONE, public=True),
        Route("ready", "GET", "/ready", EVERYONE, public=True),
        Route("openapi", "GET", "/openapi.json", EVERYONE, public=True),
        Route("login form", "GET", "/login", EVERYONE, public=True),
        Route("caseload WM", "GET", "/areas/WM/caseload?on=2005-01-01", frozenset({"unit_wm"})),
        Route("caseload DUR", "GET", "/areas/DUR/caseload", frozenset({"unit_dur"})),
        Route("caseload of no such area", "GET", "/areas/XX/caseload", frozenset()),
        Route("return WM", "GET", "/areas/WM/returns/2004", frozenset({"analyst_all"})),
        Route("return WM html", "GET", "/areas/WM/returns/2004?format=html",
              frozenset({"analyst_all"})),
        Route("return DUR csv", "GET", "/areas/DUR/returns/2004?format=csv",
              frozenset({"analyst_all", "analyst_dur"})),
        Route("return DUR md", "GET", "/areas/DUR/returns/2004?format=md&layout=2008",
              frozenset({"analyst_all", "analyst_dur"})),
        Route("national", "GET", "/returns/2004/national", frozenset({"analyst_all"})),
        Route("explain WM", "GET", "/areas/WM/returns/2004/explain?figure=viii.level3.cat1",
              frozenset({"analyst_all"})),
        Route("explain DUR", "GET", "/areas/DUR/returns/2004/explain?figure=i&format=text",
              frozenset({"analyst_all", "analyst_dur"})),
        Route("diff WM", "GET",
              "/areas/WM/returns/2004/diff?a=2000-01-01T00:00:00%2B00:00&b=now",
              frozenset({"analyst_all"})),
        Route("alerts of VLO WM", "GET", f"/vlos/{VLO_WM}/alerts", frozenset({"vlo_wm"})),
        Route("alerts of VLO DUR", "GET", f"/vlos/{VLO_DUR}/alerts?all=true",
              frozenset({"vlo_dur"})),
        Route("alerts of no such VLO", "GET", "/vlos/VLO-NOBODY/alerts", frozenset()),
        Route("done WM alert", "POST", "/alerts/{wm_alert}/done", frozenset({"vlo_wm"})),
        Route("done DUR alert", "POST", "/alerts/{dur_alert}/done", frozenset({"vlo_dur"})),
        Route("done no such alert", "POST", f"/alerts/{NO_SUCH_ALERT}/done", frozenset()),
        Route("events prison WM", "POST", "/events", frozenset({"sender_wm"}),
              body=_document("WM-MATRIX-1", "WM")),
        Route("events prison DUR", "POST", "/events", frozenset(),
              body=[_document("DUR-MATRIX-1", "DUR")]),
        Route("events probation WM", "POST", "/events", frozenset(),
              body=_document("WM-MATRIX-2", "WM", agency="probation")),
        Route("tokens", "GET", "/tokens", frozenset({"admin"})),
        Route("issue token", "POST", "/tokens", frozenset({"admin"}),
              body={"role": "unit", "scope": "GLO", "name": "matrix"}),
        Route("revoke token", "POST", "/tokens/{throwaway}/revoke", frozenset({"admin"})),
        Route("audit", "GET", "/audit?limit=1000", frozenset({"admin"})),
        Route("page: sender home", "GET", "/pages/home", VALID, page=True),
        Route("page: inbox", "GET", "/pages/inbox", frozenset({"vlo_wm", "vlo_dur"}), page=True),
        Route("page: done WM alert", "POST", "/pages/alerts/{wm_alert_2}/done",
              frozenset({"vlo_wm"}), page=True),
        Route("page: done no such alert", "POST", f"/pages/alerts/{NO_SUCH_ALERT}/done",
              frozenset(), page=True),
        Route("page: caseload WM", "GET", "/pages/areas/WM/caseload?on=2005-01-01",
              frozenset({"unit_wm"}), page=True),
        Route("page: caseload DUR", "GET", "/pages/areas/DUR/caseload",
              frozenset({"unit_dur"}), page=True),
        Route("page: returns form", "GET", "/pages/returns",
              frozenset({"analyst_all", "analyst_dur"}), page=True),
        Route("page: return WM", "GET", "/pages/areas/WM/returns/2004",
              frozenset({"analyst_all"}), page=True),
        Route("page: audit", "GET", "/pages/audit", frozenset({"admin"}), page=True),
    ]  # fmt: skip
    if data_quality_installed():
        r += [
            Route("queries WM", "GET", "/areas/WM/queries", frozenset({"unit_wm"})),
            Route("queries DUR", "GET", "/areas/DUR/queries?all=true", frozenset({"unit_dur"})),
            Route("close no such query", "POST", f"/areas/WM/queries/{NO_SUCH_QUERY}/close",
                  frozenset(), body={"note": "checked"}),
        ]  # fmt: skip
    return r


# What each holder may see: their own victims' references, their own area's offenders.
VISIBLE_VICTIMS = {"vlo_wm": {VICTIM_WM}, "vlo_dur": {VICTIM_DUR}}
HIDDEN_OFFENDERS = {
    "vlo_wm": {OFFENDER_DUR},
    "vlo_dur": {OFFENDER_WM},
    "unit_wm": {OFFENDER_DUR},
    "unit_dur": {OFFENDER_WM},
    "analyst_dur": {OFFENDER_WM},
    "sender_wm": {OFFENDER_WM, OFFENDER_DUR},
}


@dataclass
class Served:
    tracker: Tracker
    services: Services
    client: TestClient
    tokens: Tokens
    placeholders: dict[str, str] = field(default_factory=dict)

    def call(self, route: Route, who: str) -> Any:
        path = route.path.format(**self.placeholders)
        headers = self.tokens.header(who)
        if route.body is not None:
            headers["content-type"] = "application/json"
            content = json.dumps(route.body).encode()
            return self.client.request(route.method, path, headers=headers, content=content)
        return self.client.request(route.method, path, headers=headers)


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One seeded service per backend, shared by the module's tests (each test makes one
    request; the few that change something change it the same way however often)."""
    backend = str(request.param)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    if backend == "postgres":
        _create_schema(schema)
    tmp: Path = tmp_path_factory.mktemp(f"http-{backend}")
    tracker = bootstrap(settings_for(backend, tmp, schema))
    try:
        seed(tracker)
        app = create_app(tracker, limits=Limits(rate_per_minute=1_000_000))
        services: Services = app.state.services
        tokens = issue_tokens(services)
        throwaway = services.issue_token(OPERATOR, Role.VLO, "VLO-GLO-09", "throwaway")
        wm_alerts, dur_alerts = open_alert_ids(tracker, VLO_WM), open_alert_ids(tracker, VLO_DUR)
        assert len(wm_alerts) >= 2 and dur_alerts
        placeholders = {
            "wm_alert": wm_alerts[0],
            "wm_alert_2": wm_alerts[1],
            "dur_alert": dur_alerts[0],
            "throwaway": throwaway.record.token_id,
        }
        client = TestClient(app, follow_redirects=False)
        yield Served(tracker, services, client, tokens, placeholders)
    finally:
        tracker.close()
        if backend == "postgres":
            _drop_schema(schema)


def _cases() -> list[Any]:
    return [
        pytest.param(route, who, id=f"{route.name}-{who}")
        for route in routes()
        for who in sorted(EVERYONE)
    ]


@pytest.mark.parametrize(("route", "who"), _cases())
def test_every_role_gets_its_own_routes_and_a_bare_refusal_everywhere_else(
    served: Served, route: Route, who: str
) -> None:
    response = served.call(route, who)
    text = response.text
    if route.public:
        assert response.status_code == 200, text
    elif who in route.allowed:
        assert response.status_code < 400, text
        assert response.headers.get("location") != "/login"
    elif who in ("anonymous", "revoked"):
        if route.page:
            assert response.status_code == 303
            assert response.headers["location"] == "/login"
        else:
            assert response.status_code == 401
            assert response.json() == UNAUTHENTICATED
    elif route.page:
        assert response.status_code == 403
        assert text == _forbidden_page(served)
    else:
        assert response.status_code == 403
        assert response.json() == FORBIDDEN
    # Nothing that is not theirs, in any answer.
    leaked = set(secrets_in(text)) - VISIBLE_VICTIMS.get(who, set())
    assert not leaked, f"{who} saw {leaked}"
    for offender in HIDDEN_OFFENDERS.get(who, set()):
        assert offender not in text, f"{who} saw {offender}"


def _forbidden_page(served: Served) -> str:
    """The one 403 page, as a unit gets it for another area's caseload page."""
    response = served.client.get(
        "/pages/areas/XX/caseload", headers=served.tokens.header("unit_wm")
    )
    assert response.status_code == 403
    return response.text


def test_a_refusal_is_the_same_for_someone_elses_record_and_for_no_record_at_all(
    served: Served,
) -> None:
    vlo = served.tokens.header("vlo_wm")
    unit = served.tokens.header("unit_wm")
    pairs = [
        (served.client.get("/areas/DUR/caseload", headers=unit),
         served.client.get("/areas/NOWHERE/caseload", headers=unit)),
        (served.client.get(f"/vlos/{VLO_DUR}/alerts", headers=vlo),
         served.client.get("/vlos/VLO-NOBODY/alerts", headers=vlo)),
        (served.client.post(f"/alerts/{served.placeholders['dur_alert']}/done", headers=vlo),
         served.client.post(f"/alerts/{NO_SUCH_ALERT}/done", headers=vlo)),
    ]  # fmt: skip
    for theirs, nobodys in pairs:
        assert theirs.status_code == nobodys.status_code == 403
        assert theirs.content == nobodys.content
        assert _headers(theirs) == _headers(nobodys)


def _headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in ("date",)}


def test_a_vlo_reads_only_the_alerts_addressed_to_them(served: Served) -> None:
    response = served.client.get(
        f"/vlos/{VLO_WM}/alerts?all=true", headers=served.tokens.header("vlo_wm")
    )
    alerts = response.json()["alerts"]
    assert alerts
    assert {a["recipient"] for a in alerts} == {VLO_WM}
    assert {a["victim_ref"] for a in alerts} == {VICTIM_WM}


def test_another_vlo_cannot_mark_an_alert_done(served: Served) -> None:
    alert = served.placeholders["wm_alert_2"]
    response = served.client.post(f"/alerts/{alert}/done", headers=served.tokens.header("vlo_dur"))
    assert response.status_code == 403
    with served.tracker.views.transaction() as tx:
        tx.execute("SELECT done_by FROM victim_alerts WHERE alert_id = %s", (alert,))
        row = tx.fetchone()
    assert row is not None and row[0] != "vlo_dur"


def test_an_analyst_sees_offender_references_but_never_a_victims(served: Served) -> None:
    analyst = served.tokens.header("analyst_all")
    answers = [
        served.client.get(f"/areas/WM/returns/2004/explain?figure={figure}", headers=analyst).text
        for figure in ("i", "viii.level3.cat1", "ix.level3.a")
    ]
    answers.append(
        served.client.get(
            "/areas/WM/returns/2004/diff?a=2000-01-01T00:00:00%2B00:00&b=now", headers=analyst
        ).text
    )
    assert any(OFFENDER_WM in answer for answer in answers)
    assert not any(secrets_in(answer) for answer in answers)


def test_a_senders_batch_with_one_document_outside_its_scope_is_refused_whole(
    served: Served,
) -> None:
    mine, theirs = _document("WM-MATRIX-9", "WM"), _document("DUR-MATRIX-9", "DUR")
    response = served.client.post(
        "/events",
        content=json.dumps([mine, theirs]),
        headers={**served.tokens.header("sender_wm"), "content-type": "application/json"},
    )
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert served.tracker.records.known_events([mine["eventId"], theirs["eventId"]]) == {}


def _retraction(ref: str, target: str) -> dict[str, Any]:
    h = History(ref, area="WM", namespace=f"matrix-{uuid.uuid4()}")
    document = h.add("record.retracted", "2005-02-01T10:00:00+00:00", eventId=target,
                     reason="recorded in error")  # fmt: skip
    document["source"]["agency"] = "prison"
    return document


@pytest.mark.parametrize(
    ("ref", "sent_by"),
    [
        # Durham's prison sent it: another area's, under the sender's own envelope.
        (OFFENDER_DUR, ("DUR", "custody.received")),
        # West Mercia's MAPPA co-ordinator sent it: another agency's, in the same area.
        (OFFENDER_WM, ("WM", "mappa.category-assigned")),
    ],
)
def test_a_sender_cannot_take_back_what_another_agency_or_area_sent(
    served: Served, ref: str, sent_by: tuple[str, str]
) -> None:
    area, event_type = sent_by
    [history] = [h for h in world() if h.ref == ref]
    [target] = [d for d in history.documents if d["eventType"] == event_type]
    assert target["area"] == area
    retraction = _retraction(ref, target["eventId"])
    before = served.tracker.max_notification_id()

    response = served.client.post(
        "/events",
        content=json.dumps([_document("WM-MATRIX-10", "WM"), retraction]),
        headers={**served.tokens.header("sender_wm"), "content-type": "application/json"},
    )

    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert served.tracker.max_notification_id() == before


def test_a_sender_takes_back_its_own_event_and_one_not_received_yet(served: Served) -> None:
    own = _document("WM-MATRIX-11", "WM")
    header = {**served.tokens.header("sender_wm"), "content-type": "application/json"}
    assert served.client.post("/events", content=json.dumps(own), headers=header).status_code == 200
    unknown = str(uuid.uuid4())

    response = served.client.post(
        "/events",
        content=json.dumps(
            [_retraction("WM-MATRIX-11", own["eventId"]), _retraction("WM-MATRIX-12", unknown)]
        ),
        headers=header,
    )

    assert response.status_code == 200
    assert [r["verdict"] for r in response.json()["results"]] == ["accepted", "accepted"]


def test_a_revoked_token_is_refused_at_once(served: Served) -> None:
    issued = served.services.issue_token(OPERATOR, Role.UNIT, "WM", "soon revoked")
    header = {"Authorization": f"Bearer {issued.secret}"}
    assert served.client.get("/areas/WM/caseload", headers=header).status_code == 200
    revoked = served.client.post(
        f"/tokens/{issued.record.token_id}/revoke", headers=served.tokens.header("admin")
    )
    assert revoked.status_code == 200
    assert revoked.json()["revokedAt"]
    assert served.client.get("/areas/WM/caseload", headers=header).status_code == 401


def test_tokens_are_stored_hashed_and_listed_without_their_secrets(served: Served) -> None:
    with served.tracker.views.transaction() as tx:
        tx.execute("SELECT * FROM tokens")
        stored = json.dumps([list(map(str, row)) for row in tx.fetchall()])
    listed = served.client.get("/tokens", headers=served.tokens.header("admin")).text
    for secret in served.tokens.secrets.values():
        assert secret not in stored
        assert secret not in listed
