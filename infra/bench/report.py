"""Figures, their anchors and targets, and the two outputs: ``benchmarks.json`` (for a later
run to compare with) and ``BENCHMARKS.md`` (for people).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from consumers.projector import KafkaProjector
from infra.kafka import PRODUCER_BATCH_BYTES

_OPS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "ge": (operator.ge, ">="),
    "lt": (operator.lt, "<"),
    "le": (operator.le, "<="),
}


@dataclass(frozen=True)
class Target:
    """``value op threshold``, or with ``ratio`` ``value / anchor op threshold``."""

    op: str
    threshold: float
    ratio: bool = False
    unit: str = ""

    def describe(self) -> str:
        symbol = _OPS[self.op][1]
        if self.ratio:
            return f"{symbol} {self.threshold:.0%} of anchor"
        return f"{symbol} {_number(self.threshold)} {self.unit}".rstrip()

    def met(self, value: float, anchor: float | None) -> bool | None:
        compare = _OPS[self.op][0]
        if self.ratio:
            return None if not anchor else compare(value / anchor, self.threshold)
        return compare(value, self.threshold)


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    value: float | None = None
    anchor: str | None = None  # the key of the figure this one is read against
    target: Target | None = None
    detail: str = ""


@dataclass
class Figures:
    items: dict[str, Figure] = field(default_factory=dict)

    def define(self, key: str, label: str, unit: str, **kwargs: Any) -> Figure:
        figure = self.items[key] = Figure(key, label, unit, **kwargs)
        return figure

    def set(self, key: str, value: float | None, detail: str = "") -> None:
        figure = self.items[key]
        figure.value = None if value is None else float(value)
        if detail:
            figure.detail = detail

    def value(self, key: str | None) -> float | None:
        return self.items[key].value if key and key in self.items else None

    def ratio(self, figure: Figure) -> float | None:
        anchor = self.value(figure.anchor)
        if figure.value is None or not anchor:
            return None
        return figure.value / anchor

    def met(self, figure: Figure) -> bool | None:
        if figure.target is None or figure.value is None:
            return None
        return figure.target.met(figure.value, self.value(figure.anchor))

    def missing(self) -> list[str]:
        return [key for key, figure in self.items.items() if figure.value is None]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, figure in self.items.items():
            entry = asdict(figure)
            entry.pop("key")
            entry["target"] = figure.target.describe() if figure.target else None
            entry["ratio"] = _rounded(self.ratio(figure))
            entry["met"] = self.met(figure)
            entry["value"] = _rounded(figure.value)
            out[key] = entry
        return out


def _rounded(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 3 if abs(value) < 100 else 1)


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"


def _met(value: bool | None) -> str:
    return {True: "met", False: "**not met**", None: ""}[value]


# --- outputs ------------------------------------------------------------------------------


def load_previous(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "figures" in data else None


def write_json(path: Path, meta: dict[str, Any], figures: Figures) -> None:
    document = {"meta": meta, "figures": figures.as_json()}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def figure_table(figures: Figures, previous: dict[str, Any] | None = None) -> list[str]:
    earlier = (previous or {}).get("figures", {})
    header = "| figure | value | anchor | ratio to anchor | target | |"
    rule = "| --- | ---: | --- | ---: | --- | --- |"
    if earlier:
        header += " previous run | change |"
        rule += " ---: | ---: |"
    rows = [header, rule]
    for figure in figures.items.values():
        anchor = figures.items.get(figure.anchor or "")
        anchor_text = (
            f"{anchor.label}: {_number(anchor.value)} {anchor.unit}" if anchor is not None else ""
        )
        row = (
            f"| {figure.label} | {_number(figure.value)} {figure.unit} | {anchor_text} "
            f"| {_ratio(figures.ratio(figure))} "
            f"| {figure.target.describe() if figure.target else ''} "
            f"| {_met(figures.met(figure))} |"
        )
        if earlier:
            before = (earlier.get(figure.key) or {}).get("value")
            change = (
                f"{(figure.value / before - 1):+.0%}" if before and figure.value is not None else ""
            )
            row += f" {_number(before)} | {change} |"
        rows.append(row)
    return rows


def write_markdown(
    path: Path,
    meta: dict[str, Any],
    figures: Figures,
    limits: dict[str, str],
    appendix: Iterable[str] = (),
    previous: dict[str, Any] | None = None,
) -> None:
    machine, versions, history = meta["machine"], meta["versions"], meta["history"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `scripts/bench` on {meta['date']} ({meta['duration_minutes']:.0f} minutes"
        f" for the whole run). Every figure below was measured in that one run, beside its"
        f" anchor measured on the same machine in the same run; `benchmarks.json` holds the"
        f" same figures for a later run to compare with (`scripts/bench` shows the change from"
        f" the previous `benchmarks.json` in its output directory).",
        "",
    ]
    if meta.get("note"):
        lines += [meta["note"], ""]
    lines += [
        "## Machine and versions",
        "",
        f"- {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB,"
        f" {machine['os']} (kernel {machine['kernel']})",
        "- " + ", ".join(f"{name} {version}" for name, version in versions.items()),
        "",
        "## Commands",
        "",
        f"- this run: `{meta['command']}`",
        "- the full national run: `scripts/bench` (90,000 offenders, ten years)",
        "- the smoke test's run: `scripts/bench --quick --output-dir DIR`",
        "",
        "## The history and the pipeline",
        "",
        f"- {history['offenders']:,} offenders in {history['areas']} areas,"
        f" reporting years {history['years']}: {history['lines']:,} interchange lines"
        f" ({history['mean_bytes']:.0f} bytes on average),"
        f" {history['events_stored']:,} events stored"
        f" ({history['generation']}).",
        f"- {history['bulk_lines']:,} lines were produced to the inbound topic before `ingest`"
        f" started; the last {history['steady_lines']:,} were held back and offered at a steady"
        f" rate for the alert latency.",
        "- Processes: the real `mappa run ingest|relay|project NAME|publish-alerts`, one at a"
        " time for the throughput figures (each phase starts when the previous one has"
        " finished), batch size " + str(meta["batch_size"]) + ", on PostgreSQL schema and"
        " topic prefix of their own. Rates count from the first progress seen to the end, so"
        " process start-up and consumer-group joins are left out.",
        "- The Kafka anchors run kafka-python's own code with the tracker's settings: produce"
        f" as the relay's producer (idempotent, `acks=all`, {PRODUCER_BATCH_BYTES // 1024} KiB"
        " batches) but with"
        " kafka-python's partitioner, consume as the projectors' consumer (`read_committed`,"
        " 1,000 records per poll). The projectors' anchor consumes those messages again and"
        " stores them the least way a projector can, in one process: for each batch (a poll"
        f" and those ready at once after it, up to the projectors' {KafkaProjector.MAX_BATCH:,}"
        " messages), one"
        " transaction upserting a row per message key (of 1,000 keys) and the partitions'"
        " offsets, through psycopg's `executemany`.",
        "",
        "## Figures",
        "",
        *figure_table(figures, previous),
        "",
    ]
    unmet = [f for f in figures.items.values() if figures.met(f) is False]
    lines += ["## Targets", ""]
    met = [f for f in figures.items.values() if figures.met(f) is True]
    lines.append(
        f"{len(met)} of {len(met) + len(unmet)} targets met."
        + (" Not met, and what limits each:" if unmet else "")
    )
    lines.append("")
    for figure in unmet:
        lines.append(
            f"- **{figure.label}** ({_number(figure.value)} {figure.unit}, target"
            f" {figure.target.describe() if figure.target else ''}):"
            f" {limits.get(figure.key, 'not analysed')}"
        )
    if unmet:
        lines.append("")
    cpu = meta.get("cpu", {})
    if cpu:
        lines += [
            "## CPU during each phase",
            "",
            "Cores used (1.00 = one core all the time; the machine has"
            f" {machine['cores']}); `machine` is the share of all cores that was busy.",
            "",
            "| phase | " + " | ".join(["cores used by each process", "machine busy"]) + " |",
            "| --- | --- | ---: |",
        ]
        for phase, usage in cpu.items():
            parts = ", ".join(
                f"{label} {used:.2f}" for label, used in usage.items() if label != "machine"
            )
            lines.append(f"| {phase} | {parts} | {usage.get('machine', 0):.0%} |")
        lines.append("")
    lines += list(appendix)
    path.write_text("\n".join(lines).rstrip() + "\n")
