"""The statistical return laid out as the published annual reports do, in Markdown.

Layout ``2004`` follows the template of West Mercia's 2004/05 report, "SECTION 5:
MAPPA Annual Reports Statistical Information" (questions i to ix in the template's
wording); layout ``2008`` follows West Mercia's 2008/09 "MAPPA Statistical
Information" (31 March snapshot by category, MAPP meetings by level, enforcement,
serious further offences and their outcomes, further data on RSOs).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = ["format_markdown"]

_CATEGORY_LABELS_2004 = (("cat1", "RSO"), ("cat2", "V&O"), ("cat3", "OthO"))
_CATEGORY_LABELS_2008 = (
    ("cat1", "Registered Sexual Offenders"),
    ("cat2", "Violent Offenders"),
    ("cat3", "Other Dangerous Offenders"),
)


def format_markdown(ret: Mapping[str, Any], area_name: str | None = None) -> str:
    """The return ``ret`` (as made by ``compute_return``) as a Markdown document.

    ``area_name`` names the area in the questions' wording; by default it is
    looked up in the shipped areas reference data, falling back to the code.
    """
    name = area_name or _known_area_name(str(ret["area"]))
    year = int(ret["year"])
    if str(ret.get("layout")) == "2008":
        lines = _layout_2008(ret, name, year)
    else:
        lines = _layout_2004(ret, name, year)
    return "\n".join(lines).rstrip() + "\n"


def _layout_2004(ret: Mapping[str, Any], name: str, year: int) -> list[str]:
    period = f"between 1st April {year} and 31st March {year + 1}"
    lines = [
        "## SECTION 5",
        "",
        "### MAPPA Annual Reports Statistical Information",
        "",
        f"**{name}**",
        "",
        f"Required for the reporting period 1st APRIL {year} - 31st MARCH {year + 1}",
        "",
        *_as_known_on(ret),
        "#### 1. Category 1 MAPPA offenders: Registered Sex Offenders (RSO)",
        "",
        f"i) The number of RSOs living in {name} on 31st March {year + 1}.",
        "",
        *_bcu_table(ret, "BCU / division", "RSOs"),
        "ia) The number of RSOs per 100'000 head of population.",
        "",
        _value(ret.get("ia")),
        "",
        "ii) The number of sex offenders having a registration requirement who were "
        f"either cautioned or convicted for breaches of the requirement, {period}",
        "",
        _value(ret["ii"]),
        "",
        "iii) The number of (a) Sexual Offences Prevention Orders (SOPOs) applied for "
        "(b) interim SOPOs granted and (c) full SOPOs imposed by the courts in "
        f"{name} {period}",
        "",
        *_lettered(ret["iii"], "abc"),
        "iv) The number of (a) Notification Orders applied for (b) interim Notification "
        "Orders granted and (c) full Notification Orders imposed by the courts in "
        f"{name} {period}",
        "",
        *_lettered(ret["iv"], "abc"),
        "v) The number of Foreign Travel Orders (a) applied for and (b) imposed by the "
        f"courts in {name} {period}",
        "",
        *_lettered(ret["v"], "ab"),
        "#### 2. Category 2 MAPPA offenders: Violent offenders and Other Sexual offenders (V&OS)",
        "",
        "vi) The number of violent and other sexual offenders (as defined by Section 327 "
        "(3), (4) and (5) of the Criminal Justice Act (2003)) living in "
        f"{name} {period}",
        "",
        _value(ret["vi"]),
        "",
        "#### 3. Category 3 MAPPA offenders: Other Offenders (OthO)",
        "",
        "vii) The number of 'other offenders' (as defined by Section 325 (2)(b) of the "
        f"Criminal Justice Act (2003)) {period}.",
        "",
        _value(ret["vii"]),
        "",
        "#### 4. Offenders managed through Level 3 (MAPPP) & Level 2 "
        "(local inter-agency management)",
        "",
        "(viii) Identify how many MAPPA offenders in each of the three Categories "
        "(i.e. (1)- RSOs, (2)- V&O and (3)- OthO above) have been managed through the "
        "MAPPP (level 3) and through local inter-agency risk management (level 2) "
        f"{period}.",
        "",
        "| | Level 3 | Level 2 |",
        "| --- | ---: | ---: |",
    ]
    viii = ret["viii"]
    for key, label in _CATEGORY_LABELS_2004:
        lines.append(f"| {label} | {viii['level3'][key]} | {viii['level2'][key]} |")
    lines += [
        "",
        f"(ix) Of the cases managed at levels 3 or 2 (i.e. (viii)) {period} how many, "
        "whilst managed at that level:",
        "",
        "- (a) Were returned to custody for a breach of licence?",
        "- (b) Were returned to custody for a breach of a restraining order or sexual "
        "offences prevention order?",
        "- (c) Were charged with a serious sexual or violent offence?",
        "",
        "| | Level 3 | Level 2 |",
        "| --- | ---: | ---: |",
    ]
    ix = ret["ix"]
    for letter in "abc":
        lines.append(f"| {letter}) | {ix['level3'][letter]} | {ix['level2'][letter]} |")
    lines.append("")
    return lines


def _layout_2008(ret: Mapping[str, Any], name: str, year: int) -> list[str]:
    short_year = f"{year}/{(year + 1) % 100:02d}"
    viii, ix = ret["viii"], ret["ix"]
    lines = [
        "## SECTION 6",
        "",
        f"### MAPPA Statistical Information {short_year}",
        "",
        f"**{name}**: reporting period 1 April {year} to 31 March {year + 1}",
        "",
        *_as_known_on(ret),
        f"#### Number of MAPPA eligible offenders at 31 March {year + 1}",
        "",
        *_rows(
            [
                ("Registered Sexual Offenders", ret["i"]),
                ("Violent Offenders", ret["vi"]),
                ("Other Dangerous Offenders", ret["vii"]),
            ],
            total=True,
        ),
    ]
    for level in ("level2", "level3"):
        lines += [
            f"#### Offenders managed via MAPP meetings - Level {level[-1]}",
            "",
            *_rows([(label, viii[level][key]) for key, label in _CATEGORY_LABELS_2008], total=True),
        ]
    lines += [
        "#### Enforcement for offenders managed via MAPP meetings",
        "",
        "##### Returned to custody for breach of licence",
        "",
        *_by_level(ix, "a"),
        "##### Sent to custody for breach of Sexual Offences Prevention Order (SOPO)",
        "",
        *_by_level(ix, "b"),
        "#### Serious Further Offences involving offenders managed via MAPP meetings",
        "",
        "##### Charged with a serious further offence",
        "",
        *_by_level(ix, "c"),
        "##### Of those charged during the year (Level 2 and 3 combined) plus those who "
        f"remained charged with an SFO last year, ie at 31 March {year}:",
        "",
    ]
    outcomes = ret.get("sfo_outcomes") or {}
    lines += _rows(
        [
            ("Convicted of a serious further offence", outcomes.get("convicted", 0)),
            ("Other outcome", outcomes.get("other_outcome", 0)),
            ("Remain charged with serious further offence", outcomes.get("remain_charged", 0)),
        ]
    )
    v = ret["v"]
    lines += [
        "#### Further data on Registered Sexual Offenders",
        "",
        "##### Registered Sexual Offenders in:",
        "",
        *_bcu_table(ret, "Division", "RSOs"),
        f"##### Total number of registered sexual offenders in {name} per 100,000 head "
        "of population",
        "",
        f"- {_value(ret.get('ia'))} per 100,000",
        "",
        "##### Registered Sexual Offenders cautioned or convicted for breach of "
        "notification requirements",
        "",
        _value(ret["ii"]),
        "",
        "##### Sexual Offences Prevention Orders",
        "",
        *_orders_2008(ret["iii"]["a"], ret["iii"]["b"], ret["iii"]["c"]),
        "##### Notification Orders",
        "",
        *_orders_2008(ret["iv"]["a"], ret["iv"]["b"], ret["iv"]["c"]),
        "##### Foreign Travel Orders",
        "",
        *_orders_2008(v["a"], v.get("b_interim", 0), v["b"]),
    ]
    return lines


def _as_known_on(ret: Mapping[str, Any]) -> list[str]:
    known_on = ret.get("asKnownOn")
    return [f"_As known on {known_on}._", ""] if known_on else []


def _value(value: Any) -> str:
    return "not available" if value is None else str(value)


def _lettered(counts: Mapping[str, Any], letters: str) -> list[str]:
    return [
        "| | |",
        "| --- | ---: |",
        *(f"| {letter}) | {counts[letter]} |" for letter in letters),
        "",
    ]


def _rows(rows: list[tuple[str, Any]], total: bool = False) -> list[str]:
    lines = [f"- {label}: {value}" for label, value in rows]
    if total:
        lines.append(f"- Total: {sum(int(value) for _, value in rows)}")
    return [*lines, ""]


def _by_level(ix: Mapping[str, Mapping[str, int]], letter: str) -> list[str]:
    level2, level3 = ix["level2"][letter], ix["level3"][letter]
    return _rows([("Level 2", level2), ("Level 3", level3)], total=True)


def _orders_2008(applied: int, interim: int, full: int) -> list[str]:
    return _rows(
        [("Applied for", applied), ("Interim Order issued", interim), ("Full Order issued", full)]
    )


def _bcu_table(ret: Mapping[str, Any], heading: str, unit: str) -> list[str]:
    by_bcu: Mapping[str, int] = ret.get("i_by_bcu") or {}
    lines = [f"| {heading} | {unit} |", "| --- | ---: |"]
    lines += [f"| {bcu} | {count} |" for bcu, count in by_bcu.items()]
    lines += [f"| **Total** | **{ret['i']}** |", ""]
    return lines


@lru_cache(maxsize=64)
def _known_area_name(code: str) -> str:
    # Reading the shipped reference data is a convenience for callers that only
    # hold the return; a missing or broken file just leaves the code.
    from projections.statistical_return.areas import areas_path, load_areas

    try:
        area = load_areas(areas_path()).get(code)
    except (OSError, ValueError):
        return code
    return area.name if area else code
