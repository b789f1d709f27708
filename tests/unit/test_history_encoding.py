"""A history's stored JSON is made by appending what each batch added, and must be exactly
what encoding the whole history gives (a rebuild stores that, and the two are compared)."""

from __future__ import annotations

from typing import Any

import orjson

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
