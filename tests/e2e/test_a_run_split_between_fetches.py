"""On the real broker: facts stored together for an offender are judged together by a Kafka
projector, even when its fetches end between them.

One ingest transaction stored a release and, after it in the file, the victim's withdrawal
that preceded it: known together, they raise no alert (the embedded path reads the log in
whole runs). A crash audit saw a projector fetch the release alone and raise 217
``released`` alerts to VLOs whose victims had withdrawn. Here the relay pauses after each
release, so that the projector surely fetches it alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.interchange import parse_object
from infra.bootstrap import Tracker, relay
from tests.builders import History
from tests.e2e.pipeline import Pipeline

pytestmark = pytest.mark.e2e

WITHDRAWN = 3  # offenders whose victim withdrew before the release they were sent with
PAUSE_SECONDS = 1.5


class PausingBeforeWithdrawals:
    """A producer that sends everything before a withdrawal, then waits, then sends it."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.pauses = 0

    def send(self, topic: str, **message: Any) -> Any:
        if b'"victim.withdrawn"' in message["value"]:
            self.producer.flush()
            time.sleep(PAUSE_SECONDS)
            self.pauses += 1
        return self.producer.send(topic, **message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    with Pipeline.running_in(tmp_path) as pipeline:
        yield pipeline


def released_alerts(pipeline: Pipeline) -> dict[str, int]:
    """The ``released`` alerts raised, counted by victim reference."""
    tracker = pipeline.tracker()
    try:
        with tracker.views.transaction() as tx:
            tx.execute("SELECT victim_ref FROM victim_alerts WHERE kind = 'released'")
            victims = [str(victim) for (victim,) in tx.fetchall()]
    finally:
        tracker.close()
    return {victim: victims.count(victim) for victim in victims}


def ingest(tracker: Tracker, documents: list[dict[str, Any]]) -> None:
    """Store ``documents`` in one transaction, as one inbound poll does."""
    facts = [parse_object(document) for document in documents]
    results = tracker.ingest_service().ingest(list(enumerate(facts)))
    assert all(r.verdict.value == "accepted" for r in results), results


def relay_everything(tracker: Tracker, pausing: bool) -> int:
    """Relay every stored event not yet published; return how many pauses were made."""
    publisher = relay(tracker)
    producer = PausingBeforeWithdrawals(publisher.producer) if pausing else None
    if producer is not None:
        publisher.producer = producer
    try:
        while publisher.relay_once():
            pass
        publisher.settle_in_flight()
    finally:
        publisher.producer.close()
    return producer.pauses if producer is not None else 0


def test_a_withdrawal_stored_with_a_release_raises_no_alert_however_the_projector_fetches_them(
    pipeline: Pipeline,
) -> None:
    histories = [History(f"WM-{910 + n:06d}") for n in range(WITHDRAWN + 1)]
    before, together = [], []
    for n, history in enumerate(histories):
        before.append(history.add("custody.received", "2005-01-10T10:00:00+00:00",
                                  prison="HMP Long Lartin", reason="sentence"))  # fmt: skip
        before.append(history.add("mappa.category-assigned", "2005-01-11T10:00:00+00:00",
                                  category=2))  # fmt: skip
        before.append(history.add("victim.enrolled", "2005-01-20T10:00:00+00:00",
                                  victimRef=f"V-SPLIT-{n}", vloRef="VLO-WM-01"))  # fmt: skip
    for n, history in enumerate(histories):
        together.append(history.add("custody.released", "2005-11-01T10:00:00+00:00",
                                    releaseType="licence"))  # fmt: skip
        # The last offender's victim stays enrolled: their release is alerted (the control).
        if n < WITHDRAWN:
            together.append(history.add("victim.withdrawn", "2005-07-01T10:00:00+00:00",
                                        victimRef=f"V-SPLIT-{n}"))  # fmt: skip
    pipeline.start("project", "victim-alerts")
    tracker = pipeline.tracker()
    try:
        ingest(tracker, before)
        relay_everything(tracker, pausing=False)
        # The projector is consuming: what follows reaches it as the relay sends it.
        pipeline.wait_until_settled(120, projections=("victim-alerts",))
        ingest(tracker, together)
        assert relay_everything(tracker, pausing=True) == WITHDRAWN
    finally:
        tracker.close()

    pipeline.wait_until_settled(120, projections=("victim-alerts",))
    assert released_alerts(pipeline) == {f"V-SPLIT-{WITHDRAWN}": 1}
