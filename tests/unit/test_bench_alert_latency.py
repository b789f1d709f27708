"""How the benchmark times an alert: from the line that triggered it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from infra.bench.run import SteadyOffer, percentile


def offer_with(sent: list[tuple[str, str, float]]) -> SteadyOffer:
    """An offer whose lines (eventId, MAPPA reference, wall-clock ms) were sent; not run."""
    offer = SteadyOffer("127.0.0.1:1", "inbound", [], 1000)
    for event_id, ref, at in sent:
        offer.sent_at[event_id] = at
        offer.sent_for.setdefault(ref, []).append(at)
    return offer


def alert(event_id: str, ref: str, raised_ms: float, received_ms: float, **more: Any) -> dict:
    raised = datetime.fromtimestamp(raised_ms / 1000, UTC).isoformat()
    return {"event_id": event_id, "offender_ref": ref, "raised_at": raised,
            "_received_ms": received_ms, **more}  # fmt: skip


def test_an_alert_is_timed_from_the_line_of_the_event_it_names() -> None:
    offer = offer_with([("e1", "WM-1", 1_000_000.0), ("e9", "WM-2", 1_000_050.0)])
    assert offer.trigger(alert("e1", "WM-1", 1_000_080.0, 1_000_120.0)) == (1_000_000.0, False)


def test_an_alert_due_only_when_a_later_fact_arrived_is_timed_from_that_later_line() -> None:
    # A transfer reported at t=0; the victim's enrolment at t=2 s made it notifiable.
    offer = offer_with([("transfer", "WM-1", 0.0), ("enrolment", "WM-1", 2_000.0)])
    assert offer.trigger(alert("transfer", "WM-1", 2_060.0, 2_100.0)) == (2_000.0, True)


def test_lines_of_the_offender_sent_after_the_alert_was_raised_are_not_its_trigger() -> None:
    offer = offer_with([("release", "WM-1", 0.0), ("later", "WM-1", 500.0)])
    assert offer.trigger(alert("release", "WM-1", 90.0, 700.0)) == (0.0, False)


def test_a_correction_is_timed_from_the_offenders_latest_line_before_it_was_raised() -> None:
    offer = offer_with([("release", "WM-1", 0.0), ("retraction", "WM-1", 3_000.0)])
    found = offer.trigger(alert("release", "WM-1", 3_050.0, 3_080.0, kind="correction"))
    assert found == (3_000.0, True)


def test_an_alert_of_an_offender_the_load_never_sent_is_not_measured() -> None:
    offer = offer_with([("e1", "WM-1", 0.0)])
    assert offer.trigger(alert("old", "WM-7", 50.0, 60.0)) is None


def test_percentiles_are_nearest_rank() -> None:
    ordered = [float(n) for n in range(1, 101)]
    assert percentile(ordered, 0.5) == 50.0
    assert percentile(ordered, 0.99) == 99.0
