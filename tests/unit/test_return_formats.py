"""Outputs of the statistical return (CSV, HTML with charts) and the national figures.

The national tables are checked against the national overview 2001-2006 printed in County
Durham's 2005/06 report (seed 002): hand-made per-area returns that add up to the overview's
national figures must give back its rows, percentages and shares.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from projections.statistical_return.formats import flatten, format_csv, format_html
from projections.statistical_return.national import (
    change,
    format_national_csv,
    format_national_markdown,
    national_tables,
    percentage,
)
from projections.statistical_return.rules import compute_return


def a_return(area: str = "WM", year: int = 2004, **figures: Any) -> dict[str, Any]:
    """An empty return of the contract's shape with some top-level figures set."""
    return {**compute_return([], area, year), **figures}


def sample_return(layout: str = "2004") -> dict[str, Any]:
    ret = compute_return([], "WM", 2004, layout)
    ret.update(i=5, ii=3, vi=2, vii=1, ia=63, viii_distinct=4)
    ret["i_by_bcu"] = {"Hereford": 2, "North Worcs": 3}
    ret["iii"] = {"a": 2, "b": 1, "c": 1}
    ret["viii"] = {
        "level3": {"cat1": 0, "cat2": 2, "cat3": 1},
        "level2": {"cat1": 1, "cat2": 2, "cat3": 1},
    }
    return ret


# ------------------------------------------------------------------------ flatten, csv


def test_flatten_names_every_figure_by_its_key_path_and_leaves_metadata_out() -> None:
    flat = flatten(sample_return())

    assert flat["viii.level3.cat2"] == 2
    assert flat["i_by_bcu.North Worcs"] == 3
    assert flat["iii.c"] == 1
    assert flat["ix.level2.a"] == 0
    assert not {"area", "year", "layout", "asKnownOn"} & set(flat)
    assert list(flat)[:2] == ["i", "i_by_bcu.Hereford"]


def test_flatten_of_a_2008_return_includes_interim_travel_orders_and_sfo_outcomes() -> None:
    flat = flatten(sample_return("2008"))

    assert "v.b_interim" in flat
    assert {"sfo_outcomes.convicted", "sfo_outcomes.other_outcome"} <= set(flat)


def test_csv_has_one_row_per_figure_with_its_path_and_value() -> None:
    ret = sample_return()
    rows = list(csv.DictReader(io.StringIO(format_csv(ret))))

    assert [row["figure"] for row in rows] == list(flatten(ret))
    by_figure = {row["figure"]: row["value"] for row in rows}
    assert by_figure["viii.level3.cat2"] == "2"
    assert by_figure["i_by_bcu.Hereford"] == "2"
    assert {(row["area"], row["year"], row["layout"]) for row in rows} == {("WM", "2004", "2004")}


def test_csv_leaves_a_figure_that_is_not_available_empty() -> None:
    ret = compute_return([], "WM", 2004, as_known_on=None, population=None)
    rows = {row["figure"]: row["value"] for row in csv.DictReader(io.StringIO(format_csv(ret)))}

    assert rows["ia"] == ""
    assert rows["i"] == "0"


# ------------------------------------------------------------------------------- html


@pytest.fixture(scope="module")
def page() -> str:
    # Drawing two charts takes a moment: the page is made once for the tests that read it.
    return format_html(sample_return(), "West Mercia")


def test_html_page_is_self_contained_with_two_inline_svg_charts(page: str) -> None:

    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 2
    assert page.count("</svg>") == 2
    # Nothing to fetch: no script, no stylesheet link, no image source, no external reference.
    assert "<script" not in page
    assert "<link" not in page
    assert "src=" not in page
    assert all(ref.startswith("#") for ref in re.findall(r'href="([^"]*)"', page))
    assert all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", page))
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page


def test_html_charts_show_offenders_by_category_and_levels_2_and_3_by_category(page: str) -> None:
    chart1, chart2 = re.findall(r"<svg.*?</svg>", page, re.DOTALL)

    assert "Chart 1: MAPPA offenders by category" in chart1
    assert "Chart 2: offenders managed at levels 2 and 3 by category" in chart2
    # Text stays text in the SVG, so the bar labels carry the numbers: i, vi, vii ...
    for value in ("5", "2", "1"):
        assert f">{value}<" in chart1
    # ... and the legend of chart 2 names both levels.
    assert "Level 2" in chart2 and "Level 3" in chart2


def test_html_element_ids_are_unique_across_both_charts(page: str) -> None:
    ids = re.findall(r'\bid="([^"]+)"', page)

    assert ids
    assert len(ids) == len(set(ids))


def test_html_shows_the_return_tables_and_escapes_names() -> None:
    ret = sample_return()
    ret["i_by_bcu"] = {"<Hereford & Worcs>": 5}
    page = format_html(ret, "West <Mercia>")

    assert "West &lt;Mercia&gt;" in page and "West <Mercia>" not in page
    assert "&lt;Hereford &amp; Worcs&gt;" in page
    assert "<td class=n><b>5</b></td>" in page  # the BCU table's total
    assert "viii) Offenders managed at level 3 (MAPPP) and level 2" in page


def test_html_of_the_same_return_is_the_same_page(page: str) -> None:
    assert format_html(sample_return(), "West Mercia") == page


# ------------------------------------------------------------------------ percentages


def test_percentages_are_rounded_half_up_to_two_decimals() -> None:
    assert percentage(1, 800) == 0.13  # 0.125: binary floats and round() would give 0.12
    assert percentage(1, 3) == 33.33
    assert percentage(2, 3) == 66.67
    assert percentage(-1, 800) == -0.13


def test_change_from_zero_has_no_percentage_and_no_change_is_zero() -> None:
    assert change(0, 5) is None
    assert change(1, 1) == 0.0
    assert change(29594, 12754) == -56.9


# --------------------------------------------------------------------- national tables

# The national overview 2001-2006 (seed 002), years 2004/05 and 2005/06.
OVERVIEW = {
    2004: {"i": 28994, "vi": 12662, "vii": 2936, "ii": 993, "iii_c": 503, "iv_c": 22, "v_b": 1,
           "l2": (5381, 3615, 2292), "l3": (626, 547, 305)},
    2005: {"i": 29973, "vi": 14317, "vii": 3363, "ii": 1295, "iii_c": 933, "iv_c": 39, "v_b": 1,
           "l2": (6014, 4280, 2211), "l3": (580, 506, 192)},
}  # fmt: skip


def area_returns(year: int) -> list[dict[str, Any]]:
    """Three areas whose returns add up to the overview's national figures for ``year``."""
    national = OVERVIEW[year]
    shares = {"WM": 0.5, "DUR": 0.3}
    returns = []
    remaining: dict[str, Any] = {
        key: (list(value) if isinstance(value, tuple) else value) for key, value in national.items()
    }
    for area in ("WM", "DUR", "GLO"):
        ret = compute_return([], area, year)
        share = shares.get(area)

        def take(key: str, index: int | None = None, share: float | None = share) -> int:
            whole = national[key] if index is None else national[key][index]
            left = remaining[key] if index is None else remaining[key][index]
            part = left if share is None else int(whole * share)
            if index is None:
                remaining[key] -= part
            else:
                remaining[key][index] -= part
            return part

        ret["i"], ret["vi"], ret["vii"], ret["ii"] = (take(k) for k in ("i", "vi", "vii", "ii"))
        ret["iii"]["c"], ret["iv"]["c"], ret["v"]["b"] = (take(k) for k in ("iii_c", "iv_c", "v_b"))
        # Applications and interim orders are not "granted": they must not be counted.
        ret["iii"]["a"], ret["iii"]["b"] = 1000, 1000
        for index, category in enumerate(("cat1", "cat2", "cat3")):
            ret["viii"]["level2"][category] = take("l2", index)
            ret["viii"]["level3"][category] = take("l3", index)
        returns.append(ret)
    return returns


@pytest.fixture(scope="module")
def overview_tables() -> dict[str, Any]:
    return national_tables(area_returns(2005), area_returns(2004))


def rows_of(tables: dict[str, Any], table: str) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in tables[table]}


def test_table_1_reproduces_the_overviews_offenders_in_the_community_by_category(
    overview_tables: dict[str, Any],
) -> None:
    table1 = rows_of(overview_tables, "table1")

    assert (table1["cat1"]["previous"], table1["cat1"]["current"]) == (28994, 29973)
    assert table1["cat1"]["change"] == 3.38
    assert table1["cat2"]["change"] == 13.07
    assert table1["cat3"]["change"] == 14.54
    assert (table1["total"]["previous"], table1["total"]["current"]) == (44592, 47653)
    assert table1["total"]["change"] == 6.86


def test_table_2_gives_each_level_and_category_its_share_of_the_table_1_total(
    overview_tables: dict[str, Any],
) -> None:
    table2 = rows_of(overview_tables, "table2")

    assert table2["cat1"]["level2"] == {"count": 6014, "share": 12.62}
    assert table2["cat1"]["level3"] == {"count": 580, "share": 1.22}
    assert table2["cat1"]["total"] == {"count": 6594, "share": 13.84}
    assert table2["cat3"]["level3"] == {"count": 192, "share": 0.4}
    assert table2["total"]["level2"] == {"count": 12505, "share": 26.24}
    assert table2["total"]["level3"] == {"count": 1278, "share": 2.68}
    assert table2["total"]["total"] == {"count": 13783, "share": 28.92}


def test_table_3_compares_levels_2_and_3_by_category_with_last_year(
    overview_tables: dict[str, Any],
) -> None:
    table3 = rows_of(overview_tables, "table3")

    assert table3["cat1"]["level2"] == {"previous": 5381, "current": 6014, "change": 11.76}
    # The overview prints 18.39% and -7.49% for category 2, which its own figures do not
    # give (665 / 3615 = 18.3956...%, -41 / 547 = -7.4954...%): every other printed change
    # is its figures' change rounded half up to two decimals, as here.
    assert table3["cat2"]["level2"]["change"] == 18.4
    assert table3["cat2"]["level3"]["change"] == -7.5
    assert table3["cat3"]["level2"]["change"] == -3.53
    assert table3["cat1"]["level3"]["change"] == -7.35
    assert table3["cat3"]["level3"]["change"] == -37.05
    assert table3["total"]["level2"] == {"previous": 11288, "current": 12505, "change": 10.78}
    assert table3["total"]["level3"] == {"previous": 1478, "current": 1278, "change": -13.53}


def test_table_5_counts_registration_breaches_and_orders_granted(
    overview_tables: dict[str, Any],
) -> None:
    table5 = rows_of(overview_tables, "table5")

    assert (table5["ii"]["previous"], table5["ii"]["current"]) == (993, 1295)
    assert table5["ii"]["change"] == 30.41
    assert table5["sopo"]["change"] == 85.49
    assert table5["no"]["change"] == 77.27
    assert (table5["fto"]["previous"], table5["fto"]["current"], table5["fto"]["change"]) == (
        1,
        1,
        0.0,
    )
    assert (table5["orders_total"]["previous"], table5["orders_total"]["current"]) == (526, 973)
    assert table5["orders_total"]["change"] == 84.98


def test_national_tables_name_the_year_and_the_areas_summed(
    overview_tables: dict[str, Any],
) -> None:
    assert overview_tables["year"] == 2005
    assert overview_tables["previousYear"] == 2004
    assert overview_tables["areas"] == ["DUR", "GLO", "WM"]


def test_national_markdown_lays_out_the_four_tables_as_the_overview(
    overview_tables: dict[str, Any],
) -> None:
    text = format_national_markdown(overview_tables)

    assert "### Table 1. Total number of MAPPA offenders in the community by category" in text
    assert "| 1. Registered Sex Offenders (RSO) | 28994 | 29973 (3.38%) |" in text
    assert "| **Totals** | 44592 | 47653 (6.86%) |" in text
    assert "| **Total per Level** | 12505 (26.24%) | 1278 (2.68%) | 13783 (28.92%) |" in text
    assert "| 3. Other offenders | 2292 | 2211 (-3.53%) | 305 | 192 (-37.05%) |" in text
    assert "| **Total Number of Orders** | 526 | 973 (84.98%) |" in text
    assert "2004/05" in text and "2005/06" in text


def test_national_markdown_shows_a_change_from_zero_as_not_available() -> None:
    text = format_national_markdown(
        national_tables([a_return(year=2005, i=3)], [a_return(year=2004)])
    )

    assert "| 1. Registered Sex Offenders (RSO) | 0 | 3 (n/a) |" in text


def test_national_csv_has_one_row_per_table_cell(overview_tables: dict[str, Any]) -> None:
    rows = list(csv.DictReader(io.StringIO(format_national_csv(overview_tables))))

    assert {"year": "2005", "table": "table1", "row": "total", "column": "change",
            "value": "6.86"} in rows  # fmt: skip
    assert {"year": "2005", "table": "table2", "row": "cat1", "column": "level2.share",
            "value": "12.62"} in rows  # fmt: skip
