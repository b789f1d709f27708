"""The shipped areas reference data (infra/areas.json) and its loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from projections.statistical_return.areas import (
    AREAS_ENV_VAR,
    DEFAULT_AREAS_PATH,
    AreaCatalogue,
    AreasFileError,
    areas_path,
    load_areas,
)
from projections.statistical_return.rules import compute_return

# (area, year, published i, published ia), from the seeds' statistical returns:
# West Mercia 2004/05 section 5 (689, 60); West Mercia 2008/09 section 6 (734,
# 64); County Durham 2005/06 appendix 1 (327 = North 163 + South 164, 54);
# Gloucestershire 2005/06 (311 = 106 + 70 + 135, 55).
PUBLISHED = [
    ("WM", 2004, 689, 60),
    ("WM", 2008, 734, 64),
    ("DUR", 2005, 327, 54),
    ("GLO", 2005, 311, 55),
]


@pytest.fixture(scope="module")
def catalogue() -> AreaCatalogue:
    return load_areas(DEFAULT_AREAS_PATH)


def test_shipped_file_loads_with_the_three_seed_areas(catalogue: AreaCatalogue) -> None:
    assert DEFAULT_AREAS_PATH.name == "areas.json"
    assert DEFAULT_AREAS_PATH.parent.name == "infra"
    assert [area.code for area in catalogue.areas] == ["WM", "DUR", "GLO"]
    gloucestershire = catalogue.get("GLO")
    assert gloucestershire is not None
    assert gloucestershire.name == "Gloucestershire"


def test_shipped_file_has_the_contract_shape() -> None:
    raw = json.loads(DEFAULT_AREAS_PATH.read_text(encoding="utf-8"))
    for area in raw["areas"]:
        assert set(area) == {"code", "name", "bcus", "population", "releaseNoticeLeadTimes"}
        assert all(key.isdigit() for key in area["population"])
        assert set(area["releaseNoticeLeadTimes"]) == {"2", "3"}


@pytest.mark.parametrize(("area", "year", "i", "ia"), PUBLISHED)
def test_population_reproduces_the_published_rate_from_the_published_count(
    catalogue: AreaCatalogue, area: str, year: int, i: int, ia: int
) -> None:
    population = catalogue.population_for(area, year)
    assert population is not None
    # The same rounding as the return's ia: per 100,000, half up.
    assert (i * 200_000 + population) // (2 * population) == ia


def test_return_computes_the_published_rate_with_the_shipped_population(
    catalogue: AreaCatalogue,
) -> None:
    histories = [
        [
            {
                "eventId": f"e-{n}",
                "eventType": "registration.started",
                "version": 1,
                "occurredAt": "2003-01-01T12:00:00+00:00",
                "source": {"agency": "police"},
                "personReference": {"identifiers": [{"type": "MAPPA", "value": f"DUR-{n}"}]},
                "area": "DUR",
                "additionalInformation": {"period": "indefinite", "bcu": "North"},
                "recordedAt": "2003-01-01T12:00:00+00:00",
            }
        ]
        for n in range(327)
    ]
    result = compute_return(
        histories, "DUR", 2005, population=catalogue.population_for("DUR", 2005)
    )
    assert (result["i"], result["ia"]) == (327, 54)


def test_bcu_lists_come_from_the_seeds(catalogue: AreaCatalogue) -> None:
    wm, dur, glo = (catalogue.get(code) for code in ("WM", "DUR", "GLO"))
    assert wm is not None and dur is not None and glo is not None
    assert {"Hereford", "North Worcs", "Shrewsbury", "Telford and Wrekin", "Worcester"} <= set(
        wm.bcus
    )
    assert {"S.Worcs", "N. Worcs", "Herefordshire", "Shropshire", "HQ"} <= set(wm.bcus)
    assert dur.bcus == ("North", "South")
    assert glo.bcus == ("Cheltenham & Tewkesbury", "Stroud & Cotswolds", "Gloucester & Forest")


def test_missing_year_takes_the_nearest_earlier_year(catalogue: AreaCatalogue) -> None:
    assert catalogue.population_for("WM", 2006) == catalogue.population_for("WM", 2004)
    assert catalogue.population_for("WM", 2012) == catalogue.population_for("WM", 2008)
    assert catalogue.population_for("WM", 2007) != catalogue.population_for("WM", 2008)


def test_population_is_none_before_the_first_known_year_or_for_an_unknown_area(
    catalogue: AreaCatalogue,
) -> None:
    assert catalogue.population_for("WM", 2003) is None
    assert catalogue.population_for("DUR", 2004) is None
    assert catalogue.population_for("XX", 2005) is None


def test_release_notice_lead_times_per_area_and_level(catalogue: AreaCatalogue) -> None:
    assert (catalogue.lead_time_for("WM", 3), catalogue.lead_time_for("WM", 2)) == ("P3M", "P6W")
    assert (catalogue.lead_time_for("DUR", 3), catalogue.lead_time_for("DUR", "2")) == (
        "P6M",
        "P6M",
    )
    assert (catalogue.lead_time_for("GLO", 3), catalogue.lead_time_for("GLO", 2)) == ("P3M", "P6W")
    assert catalogue.lead_time_for("WM", 1) is None
    assert catalogue.lead_time_for("XX", 3) is None


def test_contract_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "areas.json"
    path.write_text(
        '{"areas": [{"code": "WM", "name": "West Mercia", "bcus": ["Hereford"],'
        ' "population": {"2004": 1148000, "2008": 1147000},'
        ' "releaseNoticeLeadTimes": {"3": "P3M", "2": "P6W"}}]}',
        encoding="utf-8",
    )
    catalogue = load_areas(path)
    assert catalogue.population_for("WM", 2009) == 1_147_000


@pytest.mark.parametrize(
    "bad_area",
    [
        {"code": "WM", "name": "West Mercia", "population": {"2004": 0}},
        {"code": "WM", "name": "West Mercia", "releaseNoticeLeadTimes": {"3": "three months"}},
        {"code": "WM", "name": "West Mercia", "releaseNoticeLeadTimes": {"4": "P3M"}},
        {"code": "", "name": "Nowhere"},
    ],
)
def test_invalid_reference_data_is_refused(tmp_path: Path, bad_area: dict[str, object]) -> None:
    path = tmp_path / "areas.json"
    path.write_text(json.dumps({"areas": [bad_area]}), encoding="utf-8")
    with pytest.raises(AreasFileError):
        load_areas(path)


def test_duplicate_area_codes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "areas.json"
    area = {"code": "WM", "name": "West Mercia"}
    path.write_text(json.dumps({"areas": [area, area]}), encoding="utf-8")
    with pytest.raises(AreasFileError, match="more than once"):
        load_areas(path)


def test_areas_path_prefers_the_option_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(AREAS_ENV_VAR, raising=False)
    assert areas_path() == DEFAULT_AREAS_PATH
    monkeypatch.setenv(AREAS_ENV_VAR, str(tmp_path / "env.json"))
    assert areas_path() == tmp_path / "env.json"
    assert areas_path(tmp_path / "option.json") == tmp_path / "option.json"


def test_a_missing_or_malformed_areas_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(AreasFileError, match="No such file"):
        load_areas(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"areas": [{"code": "XX", "population": {"2004": "many"}}]}')
    with pytest.raises(AreasFileError, match=r"broken\.json is invalid"):
        load_areas(broken)


def test_an_area_may_omit_its_name_bcus_and_lead_times(tmp_path: Path) -> None:
    minimal = tmp_path / "minimal.json"
    minimal.write_text('{"areas": [{"code": "XX", "population": {"2004": 100000}}]}')
    catalogue = load_areas(minimal)
    assert catalogue.population_for("XX", 2006) == 100000
    assert catalogue.lead_time_for("XX", 3) is None
