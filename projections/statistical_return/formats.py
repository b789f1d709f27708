"""The statistical return as CSV and as a self-contained HTML page with two charts.

``flatten`` names every figure of a return by its key path (``i``, ``i_by_bcu.Hereford``,
``iii.c``, ``viii.level3.cat1``, ...): those paths are the rows of the CSV, the figures
``mappa explain --figure`` accepts, and what ``--diff-as-known-on`` compares.

The HTML page follows the national overview's charts 1 and 2 (offenders in the community by
category; offenders at levels 2 and 3 by category). It must read offline and without
JavaScript, so the charts are drawn server-side by matplotlib as SVG and embedded inline:
no CDN, no script, no external font or stylesheet.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, Final

__all__ = ["METADATA_KEYS", "flatten", "format_csv", "format_html"]

# Keys of the contract's JSON object that describe the return rather than count anything.
METADATA_KEYS: Final = ("area", "year", "layout", "asKnownOn")

_CATEGORIES: Final = (
    ("cat1", "Registered sex offenders (RSO)"),
    ("cat2", "Violent and other sexual offenders"),
    ("cat3", "Other offenders"),
)
# Colours picked to stay distinguishable for the common colour-vision deficiencies
# (Okabe-Ito palette) and in greyscale print.
_COLOURS: Final = ("#0072B2", "#E69F00", "#009E73")
_LEVEL_COLOURS: Final = {"level2": "#56B4E9", "level3": "#D55E00"}


def flatten(ret: Mapping[str, Any]) -> dict[str, Any]:
    """Every figure of ``ret`` by its dotted key path, in the return's own order.

    Metadata (area, year, layout, asKnownOn) is left out: it is not a figure.
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        else:
            flat[prefix] = value

    for key, value in ret.items():
        if key not in METADATA_KEYS:
            walk(key, value)
    return flat


def format_csv(ret: Mapping[str, Any]) -> str:
    """One row per figure: the return's area, year, layout and asKnownOn, the path, the value.

    The context columns repeat on every row so that the CSVs of several areas or moments can
    simply be concatenated (less their headers) and still be told apart. A figure that is
    not available (``ia`` without a population) is an empty cell.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["area", "year", "layout", "asKnownOn", "figure", "value"])
    context = [ret.get("area"), ret.get("year"), ret.get("layout"), ret.get("asKnownOn") or ""]
    for path, value in flatten(ret).items():
        writer.writerow([*context, path, "" if value is None else value])
    return out.getvalue()


# ------------------------------------------------------------------------------- html


def format_html(ret: Mapping[str, Any], area_name: str | None = None) -> str:
    """The return as one self-contained HTML page: the figures, then charts 1 and 2."""
    name = area_name or str(ret["area"])
    year = int(ret["year"])
    period = f"1 April {year} to 31 March {year + 1}"
    title = f"MAPPA statistical return {year}/{(year + 1) % 100:02d}: {name}"
    chart1 = _bar_chart_svg(
        "chart1",
        title=f"Chart 1: MAPPA offenders by category, {name} {year}/{(year + 1) % 100:02d}",
        categories=[label for _, label in _CATEGORIES],
        series=[("Offenders", [int(ret["i"]), int(ret["vi"]), int(ret["vii"])], None)],
    )
    viii = ret["viii"]
    chart2 = _bar_chart_svg(
        "chart2",
        title=f"Chart 2: offenders managed at levels 2 and 3 by category, {name}",
        categories=[label for _, label in _CATEGORIES],
        series=[
            (f"Level {level[-1]}", [int(viii[level][key]) for key, _ in _CATEGORIES], colour)
            for level, colour in _LEVEL_COLOURS.items()
        ],
    )
    known = ret.get("asKnownOn")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en-GB">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{escape(title)}</h1>",
        f"<p class=meta>Reporting period {escape(period)}; layout {escape(str(ret['layout']))}"
        + (f"; as known on {escape(str(known))}" if known else "; as known now")
        + ".</p>",
        *_figures_html(ret, name, period),
        "<h2>Charts</h2>",
        '<div class="charts">',
        _figure(chart1, "Offenders in the community by category: categories 1 (i), 2 (vi) "
                "and 3 (vii)."),
        _figure(chart2, "Offenders managed at level 2 and level 3 by category (viii)."),
        "</div>",
        "</main>",
        "</body>",
        "</html>",
    ]  # fmt: skip
    return "\n".join(parts) + "\n"


_CSS: Final = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;"
    "margin:0;color:#1b1b1b;background:#fff;line-height:1.45}"
    "main{max-width:60rem;margin:0 auto;padding:1rem}"
    "h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.2rem;margin-top:2rem;"
    "border-bottom:2px solid #0072B2}h3{font-size:1rem;margin:1.2rem 0 .3rem}"
    ".meta{color:#555}"
    "table{border-collapse:collapse;margin:.3rem 0 1rem;min-width:16rem}"
    "th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
    "thead th{background:#eef3f8}"
    ".scroll{overflow-x:auto}"
    ".charts{display:flex;flex-wrap:wrap;gap:1rem}"
    "figure{margin:0;flex:1 1 22rem;min-width:0}"
    "figure svg{width:100%;height:auto;display:block}"
    "figcaption{font-size:.9rem;color:#444}"
    "@media (max-width:30rem){main{padding:.5rem}th,td{padding:.25rem .35rem}}"
)


def _figures_html(ret: Mapping[str, Any], name: str, period: str) -> list[str]:
    """The figures in the order and wording of the published template."""
    year = int(ret["year"])
    layout_2008 = str(ret.get("layout")) == "2008"
    ia = ret.get("ia")
    v = ret["v"]
    travel_rows = [("a) applied for", v["a"])]
    if layout_2008:
        travel_rows.append(("interim orders granted", v.get("b_interim", 0)))
    travel_rows.append(("b) imposed by the courts", v["b"]))
    when_vi = f"at 31 March {year + 1}" if layout_2008 else f"between {period}"
    lines = [
        "<h2>Category 1: registered sex offenders (RSO)</h2>",
        f"<h3>i) RSOs living in {escape(name)} on 31 March {year + 1}</h3>",
        _table(["BCU / division", "RSOs"], list(ret.get("i_by_bcu", {}).items()), total=ret["i"]),
        "<h3>ia) RSOs per 100,000 head of population</h3>",
        f"<p>{'not available' if ia is None else escape(str(ia))}</p>",
        "<h3>ii) RSOs cautioned or convicted for breaches of the registration requirement"
        "</h3>",
        f"<p>{escape(str(ret['ii']))}</p>",
        "<h3>iii) Sexual Offences Prevention Orders (SOPOs)</h3>",
        _orders_table(ret["iii"]),
        "<h3>iv) Notification Orders</h3>",
        _orders_table(ret["iv"]),
        "<h3>v) Foreign Travel Orders</h3>",
        _table(["", "Orders"], travel_rows),
        "<h2>Categories 2 and 3</h2>",
        f"<h3>vi) Violent and other sexual offenders in the community, {escape(when_vi)}</h3>",
        f"<p>{escape(str(ret['vi']))}</p>",
        f"<h3>vii) Other offenders in the community, {escape(when_vi)}</h3>",
        f"<p>{escape(str(ret['vii']))}</p>",
        "<h2>Levels 2 and 3</h2>",
        "<h3>viii) Offenders managed at level 3 (MAPPP) and level 2, by category</h3>",
        _by_level_table(
            ret["viii"], [(key, label) for key, label in _CATEGORIES], with_total=True
        ),
        f"<p>Distinct offenders managed at level 2 or 3: {escape(str(ret['viii_distinct']))}"
        "</p>",
        "<h3>ix) Of the cases managed at levels 3 or 2, how many, whilst managed at that "
        "level</h3>",
        _by_level_table(
            ret["ix"],
            [
                ("a", "a) were returned to custody for a breach of licence"),
                ("b", "b) were returned to custody for a breach of a restraining order or "
                      "SOPO"),
                ("c", "c) were charged with a serious sexual or violent offence"),
            ],
            with_total=False,
        ),
    ]  # fmt: skip
    outcomes = ret.get("sfo_outcomes")
    if outcomes is not None:
        lines += [
            "<h3>Serious further offence charges and their outcomes</h3>",
            _table(
                ["Outcome", "Charges"],
                [
                    ("Convicted of a serious further offence", outcomes.get("convicted", 0)),
                    ("Other outcome", outcomes.get("other_outcome", 0)),
                    ("Remain charged", outcomes.get("remain_charged", 0)),
                ],
            ),
        ]
    return lines


def _table(header: Sequence[str], rows: Sequence[tuple[str, Any]], total: Any = None) -> str:
    """A two-column table of labelled numbers, with a bold total row when ``total`` is given."""
    body = [
        f"<tr><th scope=row>{escape(str(label))}</th><td class=n>{escape(str(value))}</td></tr>"
        for label, value in rows
    ]
    if total is not None:
        body.append(
            f"<tr><th scope=row><b>Total</b></th><td class=n><b>{escape(str(total))}</b></td></tr>"
        )
    head = "".join(
        f"<th scope=col{' class=n' if i else ''}>{escape(h)}</th>" for i, h in enumerate(header)
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
        "</tbody></table></div>"
    )


def _orders_table(counts: Mapping[str, Any]) -> str:
    return _table(
        ["", "Orders"],
        [
            ("a) applied for", counts["a"]),
            ("b) interim orders granted", counts["b"]),
            ("c) full orders imposed", counts["c"]),
        ],
    )


def _by_level_table(
    by_level: Mapping[str, Mapping[str, Any]],
    rows: Sequence[tuple[str, str]],
    with_total: bool,
) -> str:
    head = "<tr><th scope=col></th><th scope=col class=n>Level 3</th>"
    head += "<th scope=col class=n>Level 2</th></tr>"
    body = [
        f"<tr><th scope=row>{escape(label)}</th><td class=n>{by_level['level3'][key]}</td>"
        f"<td class=n>{by_level['level2'][key]}</td></tr>"
        for key, label in rows
    ]
    if with_total:
        totals = [
            sum(int(by_level[level][key]) for key, _ in rows) for level in ("level3", "level2")
        ]
        body.append(
            f"<tr><th scope=row>Total</th><td class=n>{totals[0]}</td>"
            f"<td class=n>{totals[1]}</td></tr>"
        )
    return (
        f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(body)}'
        "</tbody></table></div>"
    )


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


# ----------------------------------------------------------------------------- charts

# What precedes the <svg> element in matplotlib's output: an XML declaration and a DOCTYPE,
# neither of which is allowed inside an HTML body.
_SVG_PROLOGUE: Final = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
# The RDF metadata block (creator, format) says nothing to a reader of the page.
_SVG_METADATA: Final = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_SVG_ID: Final = re.compile(r'((?:\bid=")|(?:href="#)|(?:url\(#))([^")]+)')


def _bar_chart_svg(
    id_prefix: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[int], str | None]],
) -> str:
    """A bar chart (grouped when there are several series) as an inline SVG element.

    matplotlib is imported here, not at module level: only ``--format html`` needs it, and
    its import costs more than the rest of a return.
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # Text stays text (searchable, scalable, no embedded glyph paths), and ids and metadata
    # are fixed so that the same return always gives the same page.
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "mappa", "font.size": 10}):
        figure = Figure(figsize=(6.4, 4.0), layout="constrained")
        axes = figure.add_subplot()
        count = len(series)
        width = 0.8 / count
        positions = range(len(categories))
        for index, (label, values, colour) in enumerate(series):
            offsets = [p - 0.4 + width * (index + 0.5) for p in positions]
            colours = colour if colour else list(_COLOURS[: len(values)])
            bars = axes.bar(offsets, values, width=width, label=label, color=colours)
            axes.bar_label(bars, padding=2)
        axes.set_xticks(list(positions), [_wrap(c) for c in categories])
        axes.set_title(title, fontsize=11, wrap=True)
        axes.set_ylabel("Offenders")
        axes.spines[["top", "right"]].set_visible(False)
        axes.margins(y=0.15)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        if count > 1:
            axes.legend(frameon=False)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = _SVG_METADATA.sub("", _SVG_PROLOGUE.sub("", buffer.getvalue(), count=1), count=1)
    # matplotlib numbers its element ids per figure (axes_1, patch_1, ...): prefix them, and
    # every reference to them, so that ids stay unique on a page holding several charts.
    svg = _SVG_ID.sub(lambda m: f"{m.group(1)}{id_prefix}-{m.group(2)}", svg)
    # Accessible name for screen readers; the figure's caption and the tables above hold
    # the same numbers as text.
    return svg.replace("<svg ", f'<svg role="img" aria-label="{escape(title)}" ', 1).strip()


def _wrap(label: str, width: int = 18) -> str:
    """Break a long axis label over lines so that three fit side by side on a phone."""
    words, lines, line = label.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)
