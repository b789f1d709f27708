"""A history's stored JSON is made by appending what each batch added, and must be exactly
what encoding the whole history gives (a rebuild stores that, and the two are compared)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from projections import base
from projections.base import OffenderHistory


def fact(n: int) -> dict[str, Any]:
    return {"eventId": f"e{n}", "area": "WM", "additionalInformation": {"level": n % 3 + 1},
            "description": "quoted \"text\", commas, [brackets]" if n % 2 else None}  # fmt: skip


def test_a_history_encoded_batch_by_batch_is_spelled_as_the_whole_history_encoded_at_once() -> None:
    history = OffenderHistory("o-1", "WM-1")
    for batch in ([], [fact(1)], [fact(2), fact(3)], [], [fact(4)]):
        history.begin_batch()
        history.documents.extend(batch)
        assert history.encode() == orjson.dumps(history.documents).decode()
        assert orjson.loads(history.encode()) == history.documents


def test_a_history_read_from_the_store_appends_to_the_text_it_was_read_from() -> None:
    stored = orjson.dumps([fact(1), fact(2)]).decode()
    history = OffenderHistory(
        "o-1", "WM-1", 2, orjson.loads(stored), known_before=2, encoded=stored, encoded_count=2
    )
    assert history.encode() is stored  # nothing added: nothing encoded again
    history.begin_batch()
    history.documents.append(fact(3))
    assert history.encode() == orjson.dumps([fact(1), fact(2), fact(3)]).decode()


def test_a_history_shed_between_batches_gives_the_documents_and_json_of_one_kept_decoded() -> None:
    kept, shed = OffenderHistory("o-1", "WM-1"), OffenderHistory("o-1", "WM-1")
    for batch in ([fact(1)], [fact(2), fact(3)], [], [fact(4)], [fact(5)]):
        for history in (kept, shed):
            history.begin_batch()
            for document in batch:
                history.append(document)
        assert shed.document_count == kept.document_count
        assert shed.added_documents == kept.added_documents == batch
        assert shed.encode() == kept.encode()
        shed.shed()
    assert shed.documents == kept.documents


class CountingOrjson:
    """``orjson`` as ``projections.base`` uses it, counting the JSON decoded."""

    def __init__(self) -> None:
        self.decoded = 0
        self.dumps = orjson.dumps

    def loads(self, text: str) -> Any:
        self.decoded += 1
        return orjson.loads(text)


def test_a_shed_history_takes_a_batch_and_is_encoded_without_decoding_its_documents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = CountingOrjson()
    monkeypatch.setattr(base, "orjson", counting)
    history = OffenderHistory("o-1", "WM-1")
    history.begin_batch()
    history.append(fact(1))
    history.append(fact(2))
    history.encode()
    history.shed()
    history.begin_batch()
    history.append(fact(3))
    assert history.known_before == 2 and history.document_count == 3
    assert history.added_documents == [fact(3)]
    assert history.encode() == orjson.dumps([fact(1), fact(2), fact(3)]).decode()
    assert history.added_documents == [fact(3)]  # after encoding too
    assert counting.decoded == 0
    assert history.documents == [fact(1), fact(2), fact(3)]
    assert counting.decoded == 1
