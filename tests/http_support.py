"""Helpers for the HTTP service's tests: a small two-area world, and tokens for every role.

The world has one offender in West Mercia and one in County Durham, each with a victim
enrolled with their own area's VLO, and a release notice that raises an alert to each VLO.
Victim references and free text are distinctive strings, so a test can search any answer
or log for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.bootstrap import Tracker
from infra.http.access import Role
from infra.http.audit import Actor
from infra.http.services import Services
from projections.victim_alerts.projection import alerts_for
from tests.builders import History

VICTIM_WM = "V-WM-SECRET-0001"
VICTIM_DUR = "V-DUR-SECRET-0002"
FREE_TEXT = "FREE-TEXT-lives-at-12-Acacia-Avenue"
OFFENDER_WM = "WM-HTTP-001"
OFFENDER_DUR = "DUR-HTTP-001"
VLO_WM = "VLO-WM-01"
VLO_DUR = "VLO-DUR-01"
OPERATOR = Actor("cli:tests", "tests", "operator")

# Who holds a token in the tests: (role, scope). "revoked" is revoked after issue.
PRINCIPALS: dict[str, tuple[Role, str]] = {
    "sender_wm": (Role.SENDER, "prison:WM"),
    "vlo_wm": (Role.VLO, VLO_WM),
    "vlo_dur": (Role.VLO, VLO_DUR),
    "unit_wm": (Role.UNIT, "WM"),
    "unit_dur": (Role.UNIT, "DUR"),
    "analyst_all": (Role.ANALYST, "*"),
    "analyst_dur": (Role.ANALYST, "DUR"),
    "admin": (Role.ADMIN, "*"),
    "revoked": (Role.ADMIN, "*"),
}


def offender_history(ref: str, area: str, victim: str, vlo: str) -> History:
    h = History(ref, area=area, namespace="http-tests")
    h.add("mappa.category-assigned", "2004-01-05T10:00:00+00:00", category=1)
    h.add("mappa.level-changed", "2004-01-06T10:00:00+00:00", level=3)
    h.add("registration.started", "2004-01-07T10:00:00+00:00", period="indefinite")
    h.add("custody.received", "2004-01-10T10:00:00+00:00", prison="HMP A", reason="sentence")
    enrolled = h.add("victim.enrolled", "2004-01-11T10:00:00+00:00", victimRef=victim, vloRef=vlo)
    enrolled["description"] = FREE_TEXT
    h.add(
        "release.notified",
        "2004-02-11T10:00:00+00:00",
        expectedReleaseDate="2004-06-01",
        releaseType="licence",
    )
    h.add("custody.released", "2004-06-01T10:00:00+01:00", releaseType="licence")
    # Recalled, and due out again early in 2005: the caseload has someone due for release.
    h.add("licence.recalled", "2004-08-01T10:00:00+01:00", reason="breach-of-conditions")
    h.add("release.notified", "2004-09-11T10:00:00+01:00",
          expectedReleaseDate="2005-02-01", releaseType="licence")  # fmt: skip
    return h


def world() -> list[History]:
    return [
        offender_history(OFFENDER_WM, "WM", VICTIM_WM, VLO_WM),
        offender_history(OFFENDER_DUR, "DUR", VICTIM_DUR, VLO_DUR),
    ]


def seed(tracker: Tracker) -> None:
    """Store the world and bring the projections up to date."""
    facts = [fact for history in world() for fact in history.facts()]
    tracker.ingest_service().ingest(list(enumerate(facts)))
    tracker.catch_up()


@dataclass
class Tokens:
    secrets: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def header(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[who]}"} if who in self.secrets else {}


def issue_tokens(services: Services) -> Tokens:
    tokens = Tokens()
    for who, (role, scope) in PRINCIPALS.items():
        issued = services.issue_token(OPERATOR, role, scope, who)
        tokens.secrets[who] = issued.secret
        tokens.ids[who] = issued.record.token_id
    services.revoke_token(OPERATOR, tokens.ids["revoked"])
    return tokens


def open_alert_ids(tracker: Tracker, vlo: str) -> list[str]:
    with tracker.views.transaction() as tx:
        return [a.alert.alert_id for a in alerts_for(tx, vlo)]


def secrets_in(text: str) -> list[str]:
    """The victim references and free text found in ``text`` (none, for most answers)."""
    return [s for s in (VICTIM_WM, VICTIM_DUR, FREE_TEXT) if s in text]
