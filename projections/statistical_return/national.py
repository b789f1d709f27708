"""National figures: the areas' returns summed, as in the national overview's tables 1, 2, 3, 5.

Contract (statistical-return.md, "National figures"): summed over areas for a year, with the
change from the previous year as a percentage to two decimals.

* Table 1, offenders in the community by category: ``i``, ``vi``, ``vii`` and their total.
* Table 2, level 2 and level 3 by category (``viii``), each with its share of the Table 1
  total, and the total per category and per level.
* Table 3, levels 2 and 3 by category, this year against last.
* Table 5, ``ii`` (offenders), and the Sexual Offences Act orders *granted*: SOPOs
  (``iii.c``), Notification Orders (``iv.c``), Foreign Travel Orders (``v.b``) and their
  total. "Granted" is the full order: an interim order precedes the full one in the same
  case, so counting both would count one order twice (the overview's 933 SOPOs granted in
  2005/06 are full orders).

Percentages are exact decimal arithmetic rounded half up (``12.625`` gives ``12.63``), so a
figure never depends on binary floating point; a change from zero has no percentage (None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from projections.ports import Transaction

__all__ = [
    "change",
    "format_national_csv",
    "format_national_markdown",
    "national_returns",
    "national_tables",
    "percentage",
    "store_areas",
]

_CATEGORY_ROWS: Final = (
    ("cat1", "1. Registered Sex Offenders (RSO)"),
    ("cat2", "2. Violent offenders and other sex offenders"),
    ("cat3", "3. Other offenders"),
)
# Table 1's rows and the figure of a return each one sums.
_TABLE1_FIGURES: Final = (("cat1", "i"), ("cat2", "vi"), ("cat3", "vii"))
# Table 5's rows: (key, label, path in the return).
_TABLE5_ROWS: Final = (
    ("ii", "1. Registered sex offenders (RSOs) charged/cautioned", ("ii",)),
    ("sopo", "2. Sexual offences prevention orders (SOPOs) granted", ("iii", "c")),
    ("no", "3. Notification Orders (NOs) granted", ("iv", "c")),
    ("fto", "4. Foreign Travel Orders (FTOs) granted", ("v", "b")),
)
_LEVELS: Final = ("level2", "level3")
_HUNDREDTH: Final = Decimal("0.01")


def percentage(part: int, whole: int) -> float | None:
    """``part`` as a percentage of ``whole`` to two decimals, rounded half up; None if 0."""
    if whole == 0:
        return None
    exact = Decimal(part) * 100 / Decimal(whole)
    return float(exact.quantize(_HUNDREDTH, rounding=ROUND_HALF_UP))


def change(previous: int, current: int) -> float | None:
    """The change from ``previous`` to ``current`` as a percentage of ``previous``."""
    return percentage(current - previous, previous)


def _figure(ret: Mapping[str, Any], path: Sequence[str]) -> int:
    value: Any = ret
    for key in path:
        value = value[key]
    return int(value or 0)


def _summed(returns: Iterable[Mapping[str, Any]], *path: str) -> int:
    return sum(_figure(ret, path) for ret in returns)


def _compared(previous: int, current: int) -> dict[str, Any]:
    return {"previous": previous, "current": current, "change": change(previous, current)}


def national_tables(
    returns_this_year: list[dict[str, Any]],
    returns_last_year: list[dict[str, Any]],
    year: int | None = None,
) -> dict[str, Any]:
    """Tables 1, 2, 3 and 5 of the national overview from per-area returns of two years.

    ``year`` is the reporting year of ``returns_this_year``; by default it is read from the
    returns. Every row of tables 1, 3 and 5 gives ``previous``, ``current`` and ``change``
    (percent, two decimals, None when the previous figure is 0); every cell of table 2 gives
    ``count`` and ``share`` (percent of the Table 1 total).
    """
    if year is None:
        years = {int(ret["year"]) for ret in returns_this_year}
        year = years.pop() if len(years) == 1 else None
    this, last = returns_this_year, returns_last_year

    table1_rows = [
        {"key": key, "label": label, **_compared(_summed(last, figure), _summed(this, figure))}
        for (key, label), (_, figure) in zip(_CATEGORY_ROWS, _TABLE1_FIGURES, strict=True)
    ]
    total_previous = sum(row["previous"] for row in table1_rows)
    total_current = sum(row["current"] for row in table1_rows)
    table1_rows.append(
        {"key": "total", "label": "Totals", **_compared(total_previous, total_current)}
    )

    def cell(count: int) -> dict[str, Any]:
        return {"count": count, "share": percentage(count, total_current)}

    table2_rows: list[dict[str, Any]] = []
    for key, label in _CATEGORY_ROWS:
        by_level = {level: _summed(this, "viii", level, key) for level in _LEVELS}
        table2_rows.append(
            {
                "key": key,
                "label": label,
                **{level: cell(count) for level, count in by_level.items()},
                "total": cell(sum(by_level.values())),
            }
        )
    level_totals = {level: sum(row[level]["count"] for row in table2_rows) for level in _LEVELS}
    table2_rows.append(
        {
            "key": "total",
            "label": "Total per Level",
            **{level: cell(count) for level, count in level_totals.items()},
            "total": cell(sum(level_totals.values())),
        }
    )

    table3_rows: list[dict[str, Any]] = [
        {
            "key": key,
            "label": label,
            **{
                level: _compared(
                    _summed(last, "viii", level, key), _summed(this, "viii", level, key)
                )
                for level in _LEVELS
            },
        }
        for key, label in _CATEGORY_ROWS
    ]
    table3_rows.append(
        {
            "key": "total",
            "label": "Total",
            **{
                level: _compared(
                    sum(row[level]["previous"] for row in table3_rows),
                    sum(row[level]["current"] for row in table3_rows),
                )
                for level in _LEVELS
            },
        }
    )

    table5_rows = [
        {"key": key, "label": label, **_compared(_summed(last, *path), _summed(this, *path))}
        for key, label, path in _TABLE5_ROWS
    ]
    orders = [row for row in table5_rows if row["key"] != "ii"]
    table5_rows.append(
        {
            "key": "orders_total",
            "label": "Total Number of Orders",
            **_compared(
                sum(row["previous"] for row in orders), sum(row["current"] for row in orders)
            ),
        }
    )

    return {
        "year": year,
        "previousYear": None if year is None else year - 1,
        "areas": sorted({str(ret["area"]) for ret in this}),
        "table1": table1_rows,
        "table2": table2_rows,
        "table3": table3_rows,
        "table5": table5_rows,
    }


# --------------------------------------------------------------------------- queries


def store_areas(tx: Transaction) -> list[str]:
    """Every area some stored history names (as sender or as a destination)."""
    tx.execute("SELECT DISTINCT area FROM return_offender_areas ORDER BY area")
    return [str(row[0]) for row in tx.fetchall()]


def national_returns(
    tx: Transaction,
    areas: Iterable[str],
    years: Sequence[int],
    population_for: Callable[[str, int], int | None],
    layout: str | None = None,
    as_known_on: datetime | None = None,
) -> dict[int, list[dict[str, Any]]]:
    """Each area's return for each of ``years``, from the stored timelines (or, as known on
    an earlier moment, the stored histories). Each area's timelines are read and decoded
    once for all the years: the national tables compare two."""
    from projections.statistical_return.projection import statistical_return, timelines_by_area
    from projections.statistical_return.rules import return_from_timelines

    areas = list(areas)
    stored = timelines_by_area(tx, areas) if as_known_on is None else {}
    returns: dict[int, list[dict[str, Any]]] = {year: [] for year in years}
    for area in areas:
        timelines = stored.get(area)  # None: as known on an earlier moment
        for year in years:
            population = population_for(area, year)
            returns[year].append(
                return_from_timelines(timelines, area, year, layout, None, population)
                if timelines is not None
                else statistical_return(tx, area, year, layout, as_known_on, population)
            )
    return returns


def national_tables_from_store(
    tx: Transaction,
    areas: Iterable[str],
    year: int,
    population_for: Callable[[str, int], int | None],
    layout: str | None = None,
    as_known_on: datetime | None = None,
) -> dict[str, Any]:
    """The national tables of ``year`` (compared with the year before) for ``areas``."""
    returns = national_returns(tx, areas, (year, year - 1), population_for, layout, as_known_on)
    return national_tables(returns[year], returns[year - 1], year=year)


# -------------------------------------------------------------------------- layouts


def _short(year: int | None) -> str:
    return "?" if year is None else f"{year}/{(year + 1) % 100:02d}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def _with_change(row: Mapping[str, Any]) -> str:
    return f"{row['current']} ({_pct(row['change'])})"


def format_national_markdown(tables: Mapping[str, Any]) -> str:
    """The four tables laid out as in the national overview (2001-2006)."""
    this, last = _short(tables.get("year")), _short(tables.get("previousYear"))
    areas = ", ".join(tables.get("areas") or []) or "none"
    lines = [
        f"## National MAPPA statistics {this}",
        "",
        f"Summed over {len(tables.get('areas') or [])} area(s): {areas}. "
        f"Changes are from {last}, as a percentage.",
        "",
        "### Table 1. Total number of MAPPA offenders in the community by category (% change)",
        "",
        f"| Category | {last} | {this} |",
        "| --- | ---: | ---: |",
    ]
    for row in tables["table1"]:
        lines.append(f"| {_bold_total(row)} | {row['previous']} | {_with_change(row)} |")
    lines += [
        "",
        f"### Table 2. Breakdown of level 2 and level 3 MAPPA offenders for {this}",
        "",
        "| Category of offender | Level 2 (% of MAPPA total) | Level 3 (% of MAPPA total) "
        "| Total per category (% of MAPPA total) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in tables["table2"]:
        cells = " | ".join(
            f"{row[column]['count']} ({_pct(row[column]['share'])})"
            for column in ("level2", "level3", "total")
        )
        lines.append(f"| {_bold_total(row)} | {cells} |")
    lines += [
        "",
        "### Table 3. Offenders referred to levels 2 and 3: comparison with last year (% change)",
        "",
        f"| Category of MAPPA offender | Level 2 {last} | Level 2 {this} | Level 3 {last} "
        f"| Level 3 {this} |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in tables["table3"]:
        level2, level3 = row["level2"], row["level3"]
        lines.append(
            f"| {_bold_total(row)} | {level2['previous']} | {_with_change(level2)} "
            f"| {level3['previous']} | {_with_change(level3)} |"
        )
    lines += [
        "",
        f"### Table 5. RSO enforcement and Sexual Offences Act civil orders {last} and {this} "
        "(% change)",
        "",
        f"| Measure | {last} | {this} |",
        "| --- | ---: | ---: |",
    ]
    for row in tables["table5"]:
        lines.append(f"| {_bold_total(row)} | {row['previous']} | {_with_change(row)} |")
    lines.append("")
    return "\n".join(lines)


def _bold_total(row: Mapping[str, Any]) -> str:
    label = str(row["label"])
    return f"**{label}**" if str(row["key"]).endswith("total") else label


def format_national_csv(tables: Mapping[str, Any]) -> str:
    """One row per cell of the four tables: table, row, column, value."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["year", "table", "row", "column", "value"])
    year = tables.get("year")
    for table in ("table1", "table2", "table3", "table5"):
        for row in tables[table]:
            for column, value in row.items():
                if column in ("key", "label"):
                    continue
                if isinstance(value, Mapping):
                    for inner, number in value.items():
                        writer.writerow(
                            [year, table, row["key"], f"{column}.{inner}", _csv(number)]
                        )
                else:
                    writer.writerow([year, table, row["key"], column, _csv(value)])
    return out.getvalue()


def _csv(value: Any) -> Any:
    return "" if value is None else value
