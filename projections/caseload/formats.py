"""The caseload for people (a text table) and for spreadsheets (CSV, one row per figure)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

from projections.caseload.rules import CaseloadSummary, DueForRelease

_COUNT_COLUMNS = (
    ("cat1", "category", "cat1"), ("cat2", "category", "cat2"), ("cat3", "category", "cat3"),
    ("L1", "level", "level1"), ("L2", "level", "level2"), ("L3", "level", "level3"),
    ("custody", "custody", "in_custody"), ("community", "custody", "in_community"),
    ("licence", "licence", "on_licence"), ("registered", "registration", "registered"),
)  # fmt: skip


def _heading(summary: CaseloadSummary) -> str:
    where = summary.area + (f", BCU {summary.bcu}" if summary.bcu else "")
    when = (
        f"as it stood at the end of {summary.on}"
        if summary.as_it_stood
        else f"now (windows counted from {summary.on})"
    )
    return f"Caseload of {where} {when}: {summary.managed} offenders managed"


def _release_line(due: DueForRelease) -> str:
    return (
        f"  {due.expected_release_date}  {due.mappa_ref:<12} level {due.level or '-'}  "
        f"cat {due.category or '-'}  {due.bcu or 'BCU unknown'}  ({due.release_type})"
    )


def format_table(summary: CaseloadSummary) -> str:
    on = date.fromisoformat(summary.on)
    days = summary.within_days
    lines = [_heading(summary), ""]
    header = f"{'BCU':<24}" + "".join(f"{label:>{_width(label)}}" for label, _, _ in _COUNT_COLUMNS)
    lines += [header, "-" * len(header)]
    totals = dict.fromkeys((label for label, _, _ in _COUNT_COLUMNS), 0)
    for bcu, counts in summary.by_bcu.items():
        cells = []
        for label, group, key in _COUNT_COLUMNS:
            totals[label] += counts[group][key]
            cells.append(f"{counts[group][key]:>{_width(label)}}")
        lines.append(f"{bcu[:23]:<24}" + "".join(cells))
    if len(summary.by_bcu) > 1:
        lines.append(
            f"{'all':<24}"
            + "".join(f"{totals[label]:>{_width(label)}}" for label, _, _ in _COUNT_COLUMNS)
        )

    horizon = on + timedelta(days=days)
    lines += ["", f"Due for release in the next {days} days (to {horizon}): "
              f"{len(summary.due_for_release)}"]  # fmt: skip
    for due in summary.due_for_release:
        lines.append(_release_line(due))
        lines.append(f"      {_notice_text(due)}")

    if summary.release_date_passed:
        lines += ["", "Still in custody after their expected release date (a release not "
                  f"reported?): {len(summary.release_date_passed)}"]  # fmt: skip
        for due in summary.release_date_passed:
            lines.append(_release_line(due))

    since = on - timedelta(days=days)
    lines += ["", f"Recalled in the last {days} days (since {since}): {len(summary.recalled)}"]
    for recall in summary.recalled:
        where = "in custody" if recall.in_custody else "not in custody"
        lines.append(
            f"  {recall.recalled_on}  {recall.mappa_ref:<12} level {recall.level or '-'}  "
            f"cat {recall.category or '-'}  {recall.bcu or 'BCU unknown'}  "
            f"({recall.reason}; {where})"
        )

    lines += ["", f"Orders in force on {summary.on}: {len(summary.orders)}"]
    for order in summary.orders:
        if order.interim:
            made, expiry = "interim order granted", "until the court decides"
        else:
            made = "granted"
            expiry = f"expires {order.expires_on}" if order.expires_on else "no expiry"
        lines.append(
            f"  {order.order_type:<21} {order.mappa_ref:<12} {order.bcu or 'BCU unknown'}  "
            f"{made} {order.granted_on}, {expiry}"
        )
        if order.prohibitions:
            lines.append(f"      prohibitions: {'; '.join(order.prohibitions)}")

    lines += ["", f"Offenders managed at levels 2 and 3: {len(summary.levels_2_and_3)}"]
    for person in summary.levels_2_and_3:
        status = [
            "in custody" if person.in_custody else "in the community",
            *(["on licence"] if person.on_licence else []),
            *(["registered"] if person.registered else []),
        ]
        lines.append(
            f"  level {person.level}  {person.mappa_ref:<12} cat {person.category or '-'}  "
            f"{person.bcu or 'BCU unknown'}  ({', '.join(status)})"
        )
    return "\n".join(lines)


def _width(label: str) -> int:
    return max(6, len(label) + 2)


def _notice_text(due: DueForRelease) -> str:
    if due.notice_given_on is None:
        return "no release notice on record"
    text = (
        f"notice given {due.notice_given_on} at level {due.notice_level or '-'}: "
        f"{due.notice_lead_time_days} days' notice"
    )
    if due.notice_rule is None:
        return text + " (no rule for that level)"
    if due.notice_late:
        return text + f", LATE: {due.notice_days_short} days short of the rule {due.notice_rule}"
    return text + f", in time for the rule {due.notice_rule}"


def format_csv(summary: CaseloadSummary) -> str:
    """One row per figure: ``area, on, asItStood, section, bcu, item, field, value``.

    Counts have an empty item; listed offenders are items by MAPPA reference, orders by
    the eventId of their grant. The context columns repeat on every row so that the CSVs
    of several areas or dates can be concatenated (less their headers) and still be told
    apart, as the return's CSV can.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["area", "on", "asItStood", "section", "bcu", "item", "field", "value"])
    context = [summary.area, summary.on, "true" if summary.as_it_stood else "false"]

    def row(section: str, bcu: str | None, item: str, name: str, value: Any) -> None:
        writer.writerow([*context, section, bcu or "", item, name, _cell(value)])

    row("managed", summary.bcu, "", "managed", summary.managed)
    for bcu, counts in summary.by_bcu.items():
        for group, values in counts.items():
            for key, count in values.items():
                row("counts", bcu, "", f"{group}.{key}", count)
    listed: list[tuple[str, list[Any], str]] = [
        ("due_for_release", summary.due_for_release, "mappa_ref"),
        ("release_date_passed", summary.release_date_passed, "mappa_ref"),
        ("recalled", summary.recalled, "mappa_ref"),
        ("orders", summary.orders, "event_id"),
        ("levels_2_and_3", summary.levels_2_and_3, "mappa_ref"),
    ]
    for section, entries, key in listed:
        for entry in entries:
            fields = asdict(entry)
            item, entry_bcu = str(fields.pop(key)), fields.pop("bcu")
            for name, value in fields.items():
                row(section, entry_bcu, item, name, value)
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)
