"""The national-scale history generator: 42 areas, shared out by population, merged feeds."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from consumers.interchange import InvalidDocument, parse_document
from infra.generator import (
    AREA_BCUS,
    generate_history,
    generate_national_history,
    national_areas,
    national_shares,
    write_national_history,
)

REFERENCE = re.compile(r"^([A-Z]{2,4})-(\d{6})$")


@cache
def national(offenders: int = 840, seed: int = 3) -> tuple[str, ...]:
    return tuple(generate_national_history(2005, 2006, offenders, seed))


def valid_documents(lines: tuple[str, ...]) -> list[dict[str, Any]]:
    docs = []
    for line in lines:
        try:
            parse_document(line)
        except InvalidDocument:
            continue
        docs.append(json.loads(line))
    return docs


def mappa_reference(doc: dict[str, Any]) -> str:
    return next(i["value"] for i in doc["personReference"]["identifiers"] if i["type"] == "MAPPA")


def test_there_are_42_areas_with_distinct_short_codes_including_the_seed_areas() -> None:
    areas = national_areas()
    assert len(areas) == len(set(areas)) == 42
    assert set(AREA_BCUS) <= set(areas)
    assert all(re.fullmatch(r"[A-Z]{2,4}", code) for code in areas)


def test_offenders_are_shared_out_exactly_and_the_largest_area_gets_most() -> None:
    shares = national_shares(90_000)
    assert sum(shares.values()) == 90_000
    assert set(shares) == set(national_areas())
    assert max(shares, key=lambda code: shares[code]) == "LON"
    assert sum(national_shares(41).values()) == 41


def test_the_national_history_is_deterministic_and_conforms() -> None:
    lines = national()
    assert lines == tuple(generate_national_history(2005, 2006, 840, 3))
    assert lines != tuple(generate_national_history(2005, 2006, 840, 4))
    docs = valid_documents(lines)
    # Invalid lines are rare extras (about 0.1%, at least three per area of 100 offenders).
    assert len(docs) > 0.98 * len(lines)
    assert {doc["area"] for doc in docs} == set(national_areas())


def test_each_reference_number_belongs_to_one_offender_nationally() -> None:
    areas_of_number: dict[str, set[str]] = defaultdict(set)
    for doc in valid_documents(national()):
        match = REFERENCE.match(mappa_reference(doc))
        assert match, mappa_reference(doc)
        areas_of_number[match.group(2)].add(match.group(1))
    # An offender who arrived from another area keeps that area's prefix, but no two areas
    # ever hand out the same number: references never collide between areas.
    assert all(len(prefixes) == 1 for prefixes in areas_of_number.values())
    assert len(areas_of_number) > 700


def test_the_feeds_are_merged_in_order_of_receipt_within_each_offender() -> None:
    first_seen: dict[str, int] = {}
    for number, doc in enumerate(valid_documents(national())):
        first_seen.setdefault(mappa_reference(doc), number)
    # References are numbered in order of entry within each area, so an area's offenders
    # appear in the merged file in roughly that order (early entrants first).
    by_area: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for reference, position in first_seen.items():
        by_area[reference.split("-")[0]].append((reference, position))
    london = sorted(by_area["LON"])
    assert london[0][1] < london[-1][1]


def test_seed_areas_keep_their_histories_and_any_national_area_can_be_generated() -> None:
    assert generate_history("WM", 2005, 2006, 50, 1) == generate_history("WM", 2005, 2006, 50, 1)
    lines = generate_history("LON", 2005, 2006, 100, 1, invalid_lines=False)
    docs = [json.loads(line) for line in lines]
    assert {doc["area"] for doc in docs} <= set(national_areas())
    assert any(mappa_reference(doc).startswith("LON-") for doc in docs)
    with pytest.raises(ValueError, match="unknown area"):
        generate_history("XX", 2005, 2006, 10, 1, national=True)


def test_write_national_history_streams_every_line_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "national.jsonl"
    count = write_national_history(path, 2005, 2006, 840, 3)
    assert count == len(national())
    assert path.read_text(encoding="utf-8").splitlines() == list(national())
