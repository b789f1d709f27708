"""Projections keep what they folded from a history between batches (the caseload's snapshot
fold, the return's timeline, the alerts' facts) and extend or reuse it instead of folding
the whole history again: what they store must be what a fold from scratch gives, however
the facts arrive and are batched."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import orjson
import pytest

from infra.generator import generate_history
from projections.base import OffenderHistory, events_of
from projections.caseload import projection as caseload_projection
from projections.caseload.rules import SnapshotFold, snapshot
from projections.statistical_return import projection as return_projection
from projections.statistical_return.rules import TimelineFold, build_timeline
from projections.victim_alerts import projection as alerts_projection
from projections.victim_alerts.rules import derive_alerts, fact_of

Document = dict[str, Any]


@cache
def generated_histories() -> tuple[tuple[Document, ...], ...]:
    """Each offender's documents in the order an agency feed delivered them: late reports,
    retractions, transfers and recalls included."""
    by_offender: dict[str, list[Document]] = defaultdict(list)
    received = datetime(2026, 1, 1, tzinfo=UTC)
    for n, line in enumerate(generate_history("WM", 2004, 2008, 250, 11, invalid_lines=False)):
        document = orjson.loads(line)
        document["recordedAt"] = (received + timedelta(seconds=n)).isoformat()
        reference = next(
            i["value"] for i in document["personReference"]["identifiers"] if i["type"] == "MAPPA"
        )
        by_offender[reference].append(document)
    return tuple(tuple(history) for history in by_offender.values())


def batches(documents: tuple[Document, ...], rng: random.Random) -> list[list[Document]]:
    cuts = sorted(
        rng.sample(range(1, len(documents)), k=min(len(documents) - 1, rng.randint(0, 8)))
    )
    bounds = [0, *cuts, len(documents)]
    return [list(documents[a:b]) for a, b in itertools.pairwise(bounds)]


def delivered(seed: int, shed: bool = False) -> Iterator[tuple[OffenderHistory, bool]]:
    """Every generated history, batch after batch as a writer would hold it, with whether
    the batch is the history's first (random cuts, the same for a seed); ``shed``: kept
    between batches with its documents as JSON only, as a writer's cache keeps it."""
    rng = random.Random(seed)
    for number, documents in enumerate(generated_histories()):
        history = OffenderHistory(f"00000000-0000-0000-0000-{number:012d}", "")
        for index, batch in enumerate(batches(documents, rng)):
            history.begin_batch()
            for document in batch:
                history.append(document)
            history.mappa_ref = batch[0]["personReference"]["identifiers"][0]["value"]
            history.new_facts.extend([None] * len(batch))
            yield history, index == 0
            if shed:
                history.encode()
                history.shed()


def test_generated_histories_have_what_makes_a_fold_start_again() -> None:
    documents = [d for history in generated_histories() for d in history]
    kinds = {d["eventType"] for d in documents}
    assert {"record.retracted", "release.notified", "licence.recalled", "order.granted"} <= kinds
    late = sum(
        1
        for history in generated_histories()
        for earlier, later in itertools.pairwise(history)
        if datetime.fromisoformat(later["occurredAt"])
        < datetime.fromisoformat(earlier["occurredAt"])
    )
    assert late > 20


class FoldsCounted:
    count = 0


def count_folds_from_scratch(monkeypatch: pytest.MonkeyPatch, fold: type[Any]) -> FoldsCounted:
    """Count the calls of ``fold.of`` (a fold of a whole history) from now on."""
    counted = FoldsCounted()
    original_of = fold.of.__func__

    def counting_of(cls: type[Any], *args: Any, **kwargs: Any) -> Any:
        counted.count += 1
        return original_of(cls, *args, **kwargs)

    monkeypatch.setattr(fold, "of", classmethod(counting_of))
    return counted


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("delivered_as", ["documents", "events"])
@pytest.mark.parametrize("shed", [False, True], ids=["kept-decoded", "kept-as-json"])
def test_snapshots_kept_between_batches_equal_those_folded_from_scratch(
    seed: int, delivered_as: str, shed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    folds = count_folds_from_scratch(monkeypatch, SnapshotFold)
    refreshes = 0
    for history, _ in delivered(seed, shed):
        if delivered_as == "events":
            history.new_facts = events_of(history)[history.known_before :]  # type: ignore[assignment]
        kept = caseload_projection._snapshot_of(history)
        refreshes += 1
        from_scratch = snapshot(history.offender_id, history.mappa_ref, events_of(history))
        assert kept == from_scratch, (history.mappa_ref, len(history.documents))
    # Both ways were taken: besides each offender's first batch, some batches folded the
    # history again, and most extended the kept fold. (The reference fold counts one each.)
    by_the_projection = folds.count - refreshes
    assert len(generated_histories()) < by_the_projection < refreshes / 2


def snapshots_one_fact_at_a_time(documents: list[Document]) -> None:
    history = OffenderHistory("00000000-0000-0000-0000-000000000001", "")
    for document in documents:
        history.begin_batch()
        history.documents.append(document)
        history.mappa_ref = document["personReference"]["identifiers"][0]["value"]
        history.new_facts.append(None)
        kept = caseload_projection._snapshot_of(history)
        assert kept == snapshot(history.offender_id, history.mappa_ref, events_of(history))


def test_a_fact_whose_retraction_arrived_first_is_never_folded_in() -> None:
    for documents in generated_histories():
        retractions = [d for d in documents if d["eventType"] == "record.retracted"]
        targets = {r["additionalInformation"]["eventId"] for r in retractions}
        if not retractions or not any(d["eventId"] in targets for d in documents):
            continue
        # Every retraction first, then the facts in the order they happened: each later
        # fact follows all folded so far, but a retracted one must still be left out.
        in_order = sorted(
            (d for d in documents if d["eventType"] != "record.retracted"),
            key=lambda d: (datetime.fromisoformat(d["occurredAt"]), d["eventId"]),
        )
        snapshots_one_fact_at_a_time([*retractions, *in_order])
        return
    pytest.fail("no generated history retracts a fact it holds")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shed", [False, True], ids=["kept-decoded", "kept-as-json"])
def test_timelines_kept_between_batches_equal_those_built_from_scratch(
    seed: int, shed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    folds = count_folds_from_scratch(monkeypatch, TimelineFold)
    reused = built = 0
    stored = None
    for history, first_batch in delivered(seed, shed):
        if first_batch:
            stored = None
        changed = return_projection._changed(history)
        if changed:
            (stored,) = changed
            built += 1
        else:
            reused += 1
        before = folds.count
        assert stored == build_timeline(history.documents), len(history.documents)
        folds.count = before  # the reference build is not the projection's
    assert reused > built / 10 and built > len(generated_histories())
    # Both ways were taken: besides each offender's first batch, some timelines were folded
    # again from scratch, and others extended the kept fold.
    by_the_projection = folds.count - len(generated_histories())
    assert 0 < by_the_projection < built - len(generated_histories())


def test_a_fact_at_the_first_instant_is_never_taken_as_leaving_the_timeline() -> None:
    # An inert fact (a victim's enrolment) that happened before every other fact names the first
    # area: the timeline may change, so it is built again.
    documents = next(h for h in generated_histories() if len(h) > 3)
    history = OffenderHistory("00000000-0000-0000-0000-000000000001", "")
    history.begin_batch()
    history.documents.extend(documents)
    built = return_projection._changed(history)
    assert built  # may change: built
    first = built[0]
    earliest = min(documents, key=lambda d: datetime.fromisoformat(d["occurredAt"]))
    enrolment = {
        **earliest,
        "eventId": "00000000-0000-4000-8000-000000000001",
        "eventType": "victim.enrolled",
        "occurredAt": (
            datetime.fromisoformat(earliest["occurredAt"]) - timedelta(minutes=1)
        ).isoformat(),
        "area": "GLO",
        "additionalInformation": {"victimRef": "V-1", "vloRef": "VLO-1"},
    }
    history.begin_batch()
    history.documents.append(enrolment)
    rebuilt = return_projection._changed(history)
    assert rebuilt  # may change: built again
    assert rebuilt[0] != first
    assert first is not None and first.states[0].area != "GLO"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shed", [False, True], ids=["kept-decoded", "kept-as-json"])
def test_caseload_rows_left_unwritten_are_those_already_stored(seed: int, shed: bool) -> None:
    written = skipped = 0
    stored = None
    for history, first_batch in delivered(seed, shed):
        if first_batch:
            stored = None
        changed = caseload_projection._changed_snapshot(history)
        if changed is None:
            skipped += 1
        else:
            stored, written = changed, written + 1
        assert stored == snapshot(history.offender_id, history.mappa_ref, events_of(history))
    assert skipped > written / 20


@pytest.mark.parametrize("seed", range(3))
def test_alert_facts_kept_between_batches_are_those_read_from_scratch(seed: int) -> None:
    extended = 0
    for history, first_batch in delivered(seed):
        before = history.memo.get(alerts_projection._FACTS)
        kept = alerts_projection._facts_read(history)
        assert kept == [fact_of(document) for document in history.documents]
        if not first_batch:
            assert before is kept  # extended in place, not read again
            extended += 1
    assert extended > len(generated_histories())


@pytest.mark.parametrize("seed", range(3))
def test_a_history_judged_to_owe_nothing_would_have_derived_no_alert(seed: int) -> None:
    """``_owes_nothing`` spares the alerts' rules (and the read of the alerts on record) only
    where ``derive_alerts`` finds nothing to derive, however the facts were batched."""

    def every_lead_time(area: str, level: int) -> str:
        return "P28D"

    spared = judged = 0
    for history, _ in delivered(seed, shed=bool(seed % 2)):
        if not alerts_projection._may_change_alerts(history):
            continue
        judged += 1
        facts = alerts_projection._facts_read(history)
        since = alerts_projection._judged_since(history, facts)
        if since is not None and alerts_projection._owes_nothing(history, facts, since):
            spared += 1
            assert derive_alerts(history.documents, every_lead_time, facts, {}, since) == []
    assert judged / 5 < spared < judged * 4 / 5
