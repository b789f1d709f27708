"""``mappa``: the tracker's command line.

Every command works against whatever store the settings configure: the embedded default
(SQLite files in ``MAPPA_DATA_DIR``) or PostgreSQL (``MAPPA_DATABASE_URL``). Answers go to
standard output, logs and progress bars to standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from consumers.ingest import Result, Summary, Verdict
from consumers.interchange import InvalidDocument, json_schema, parse_document
from domain.offender import ReportedFact
from infra.bootstrap import ProjectionsBehind, Tracker, bootstrap
from infra.encryption import StoreKeyError
from infra.eventstore import EVERY_OFFENDER, RelayShare
from infra.logs import configure_logging
from infra.process import tune_garbage_collection
from infra.rebuild import check_jobs, default_jobs, rebuild_projections
from infra.settings import Settings
from projections.statistical_return.areas import AreaCatalogue, AreasFileError

if TYPE_CHECKING:
    from projections.ports import Transaction

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
# A file is ingested in submissions of this many lines (or MAPPA_BATCH_SIZE, if larger), each
# stored in one transaction and so known from one moment: victim alerts judge the facts of
# one moment together, in occurredAt order, so up to this size a file's facts count whatever
# their order in it. Some 20 MB of documents held at once.
FILE_SUBMISSION_LINES = 20_000
# The longest window of "due for release" and "recalled" (a century): beyond it, the dates
# counted from would leave the calendar.
MAX_WITHIN_DAYS = 36_524
# The reporting years a return can be asked for (the web service's bounds too).
FIRST_YEAR, LAST_YEAR = 1900, 2999


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if argv is None:
        # The process's own command line (not a program or test embedding the tracker,
        # whose objects are not ours to freeze).
        tune_garbage_collection()
    settings = Settings()
    if getattr(args, "areas", None):
        settings = settings.model_copy(update={"areas": Path(args.areas)})
    configure_logging(settings.log_format, settings.log_level)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        return handler(args, settings)
    except UsageError as error:
        print(f"mappa: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreKeyError, AreasFileError) as error:
        # A wrong or missing MAPPA_CIPHER_KEY, a broken MAPPA_AREAS file: the reason, not a
        # traceback.
        print(f"mappa: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ProjectorsRunning as error:
        print(f"mappa: rebuild refused: {error}", file=sys.stderr)
        return EXIT_REJECTED


def _reporting_year(text: str) -> int:
    """``--year``: a whole year from ``FIRST_YEAR`` to ``LAST_YEAR`` (argparse's usage error
    otherwise, rather than a failure deep in the calendar)."""
    try:
        year = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a year: {text!r}") from None
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise argparse.ArgumentTypeError(f"a year from {FIRST_YEAR} to {LAST_YEAR}, not {year}")
    return year


class UsageError(Exception):
    pass


# --- commands ------------------------------------------------------------------------


def _schema(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from infra.generator import write_history

    first, last = _years(args.years)
    count = write_history(Path(args.out), args.area, first, last, args.offenders, args.seed)
    print(f"wrote {count} lines to {args.out}", file=sys.stderr)
    return EXIT_OK


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    tracker = bootstrap(settings)
    try:
        submission = max(settings.batch_size, FILE_SUBMISSION_LINES)
        summary = ingest_file(tracker, path, submission, progress=not args.quiet)
        for rejection in summary.rejections:
            print(f"line {rejection.item}: rejected: {rejection.message}", file=sys.stderr)
        print(json.dumps(summary.as_dict()) if args.json else _summary_line(summary))
        if not settings.kafka_bootstrap:
            _catch_up(tracker, progress=not args.quiet)
    except ProjectionsBehind as behind:
        # Every accepted document is stored; what failed is bringing a view up to date.
        _warn_behind(behind)
        return EXIT_REJECTED
    finally:
        tracker.close()
    return EXIT_REJECTED if summary.rejected else EXIT_OK


def ingest_file(tracker: Tracker, path: Path, batch_size: int, progress: bool = True) -> Summary:
    """Ingest a .jsonl file: every good line is stored, every bad one reported by number."""
    service = tracker.ingest_service()
    summary = Summary()
    total = path.stat().st_size
    with path.open("rb") as lines, _bar(total, "ingest", "B", progress) as bar:
        batch: list[tuple[int, ReportedFact]] = []
        for number, raw in enumerate(lines, start=1):
            bar.update(len(raw))
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a byte-order mark, as some Windows tools write
            if not raw.strip():
                continue
            try:
                batch.append((number, parse_document(raw)))
            except InvalidDocument as error:
                summary.add(Result(number, Verdict.REJECTED, message=str(error)))
            if len(batch) >= batch_size:
                _ingest_batch(service, batch, summary)
                batch = []
        _ingest_batch(service, batch, summary)
    summary.rejections.sort(key=lambda r: r.item)
    return summary


def _ingest_batch(service: Any, batch: list[tuple[int, ReportedFact]], summary: Summary) -> None:
    if batch:
        for result in service.ingest(batch):
            summary.add(result)


def _summary_line(summary: Summary) -> str:
    return (
        f"accepted {summary.accepted}, duplicate {summary.duplicate}, "
        f"rejected {summary.rejected}, queried {summary.queried}"
    )


def _catch_up(tracker: Tracker, progress: bool = True) -> None:
    """Bring every view up to date, a progress bar each; raises ``ProjectionsBehind`` for
    those that could not be, once the others are."""
    total = tracker.max_notification_id()
    failures: dict[str, Exception] = {}
    for name in tracker.writers:
        done = tracker.writer(name).position("offenders")
        with _bar(total, f"project {name}", " events", progress, initial=done) as bar:
            try:
                tracker.catch_up([name], on_batch=lambda _name, n: bar.update(n))
            except ProjectionsBehind as behind:
                failures.update(behind.failures)
    if failures:
        raise ProjectionsBehind(failures)


def _warn_behind(behind: ProjectionsBehind) -> None:
    print(f"mappa: warning: some views are {behind}", file=sys.stderr)


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    tracker = bootstrap(settings)
    try:
        names = list(tracker.writers) if args.name == "all" else [args.name]
        for name in names:
            try:
                tracker.writer(name)
            except KeyError as error:
                raise UsageError(error.args[0]) from None
        jobs = default_jobs(settings) if args.jobs is None else args.jobs
        try:
            check_jobs(settings, jobs)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if settings.kafka_bootstrap and not args.projectors_stopped:
            _refuse_beside_running_projectors(settings, names)
        total = tracker.max_notification_id()
        with ExitStack() as stack:
            bars = {
                name: stack.enter_context(_bar(total, f"rebuild {name}", " events", not args.quiet))
                for name in names
            }
            rebuilt = rebuild_projections(
                tracker, names, jobs, on_batch=lambda name, n: bars[name].update(n)
            )
        for done in rebuilt:
            print(f"{done.projection}: rebuilt from {done.applied} events")
    finally:
        tracker.close()
    return EXIT_OK


class ProjectorsRunning(Exception):
    """A rebuild asked for while Kafka projectors of the projection may be storing to it."""


def _refuse_beside_running_projectors(settings: Settings, names: list[str]) -> None:
    """Raise ``ProjectorsRunning`` if a Kafka projector of ``names`` is in its consumer
    group, or if that cannot be known.

    A rebuild resets the projection and replays the store into it: a projector storing
    batches meanwhile writes into histories being replaced. A crash audit rebuilt the
    projections three times beside running projectors and one VLO got 7 alerts twice.
    """
    from kafka.errors import KafkaError

    from infra.bootstrap import topics
    from infra.kafka import group_members

    assert settings.kafka_bootstrap
    groups = {topics(settings).group(f"projector-{name}"): name for name in names}
    stop_first = (
        "stop those projectors (mappa run project NAME), rebuild, then start them again; "
        "--projectors-stopped rebuilds without asking the broker"
    )
    try:
        members = group_members(settings.kafka_bootstrap, list(groups))
    except KafkaError as error:
        raise ProjectorsRunning(
            f"cannot tell whether Kafka projectors of {', '.join(names)} are running: the "
            f"broker at {settings.kafka_bootstrap} did not answer ({type(error).__name__}); "
            + stop_first
        ) from None
    running = {groups[group]: count for group, count in members.items() if count}
    if running:
        shown = ", ".join(f"{name} ({count})" for name, count in sorted(running.items()))
        raise ProjectorsRunning(
            f"Kafka projectors are running for {shown}; a rebuild beside them would mix "
            "their batches into the replay: " + stop_first
        )


def _caseload(args: argparse.Namespace, settings: Settings) -> int:
    """``mappa caseload``: now (the stored rows), or with ``--on`` as it stood on that date."""
    from infra.http.audit import offenders_named
    from projections.caseload.formats import format_csv, format_table
    from projections.caseload.projection import caseload
    from projections.caseload.rules import LONDON

    if not 0 <= args.within <= MAX_WITHIN_DAYS:
        raise UsageError(f"caseload: --within is a number of days, 0 to {MAX_WITHIN_DAYS:,}")
    on = _date(args.on) if args.on else datetime.now(LONDON).date()
    if not date(FIRST_YEAR, 1, 1) <= on <= date(LAST_YEAR, 12, 31):
        raise UsageError(f"caseload: --on {on} is not a date the tracker can hold records for")
    with _reading(settings) as tracker, tracker.views.transaction() as tx:
        area = _one_of(args.area, _areas_known(tx, tracker.areas), "area", "caseload: --area")
        bcu = args.bcu and _one_of(
            args.bcu, _bcus_known(tx, tracker.areas, area), f"BCU of {area}", "caseload: --bcu"
        )
        summary = caseload(
            tx, area, on, args.within, bcu=bcu, as_it_stood=args.on is not None,
            lead_times=tracker.areas.lead_time_for,
        )  # fmt: skip
        _audited(tx, "caseload.read", f"area:{area}",
                 {"offenders": offenders_named(summary.to_json())})  # fmt: skip
    if args.format == "json":
        print(json.dumps(summary.to_json(), indent=2))
    elif args.format == "csv":
        print(format_csv(summary), end="")
    else:
        print(format_table(summary))
    return EXIT_OK


def _areas_known(tx: Transaction, areas: AreaCatalogue) -> list[str]:
    """The areas of the reference data, and any other an offender has been in."""
    from projections.statistical_return.national import store_areas

    return sorted({area.code for area in areas.areas} | set(store_areas(tx)))


def _bcus_known(tx: Transaction, areas: AreaCatalogue, area: str) -> list[str]:
    """The area's BCUs in the reference data, any other an offender of it has, and
    ``unknown`` (none known)."""
    from projections.caseload.projection import bcus_on_record
    from projections.caseload.rules import UNKNOWN_BCU

    reference = areas.get(area)
    found = bcus_on_record(tx, area)
    return [*sorted({*(reference.bcus if reference else ()), *found}), UNKNOWN_BCU]


def _one_of(value: str, known: Sequence[str], what: str, option: str) -> str:
    """``value`` as spelt in ``known`` (letter case aside); a usage error naming them if it
    is none of them: a misspelt area or BCU would otherwise show an empty caseload."""
    for candidate in known:
        if candidate.casefold() == value.strip().casefold():
            return candidate
    listed = ", ".join(known) if known else "none yet"
    raise UsageError(f"{option}: no {what} {value!r}; known: {listed}")


def _queries(args: argparse.Namespace, settings: Settings) -> int:
    """``mappa queries``: an area's data-quality queries, or close one with a note."""
    from projections.data_quality.projection import QueryNotFound, close_query, queries_for

    if args.action == "close":
        if not args.query_id or not args.by or not args.note:
            raise UsageError("usage: mappa queries close QUERY_ID --by NAME --note TEXT")
        with _reading(settings) as tracker, tracker.views.transaction() as tx:
            try:
                outcome = close_query(tx, args.query_id, args.by, args.note, datetime.now(UTC))
                _audited(tx, "query.close", f"query:{args.query_id}", {"outcome": outcome})
            except QueryNotFound:
                print(f"mappa: no data-quality query {args.query_id}", file=sys.stderr)
                return EXIT_REJECTED
        print(
            {
                "closed": f"query {args.query_id} closed",
                "cleared": f"query {args.query_id} had cleared itself: nothing to close",
                "already closed": f"query {args.query_id} was already closed",
            }[outcome]
        )
        return EXIT_OK
    if not args.area:
        raise UsageError("queries: say which area's: --area CODE")
    now = datetime.now(UTC)
    with _reading(settings) as tracker, tracker.views.transaction() as tx:
        queries = queries_for(tx, args.area, include_ended=args.all)
        _audited(tx, "queries.read", f"area:{args.area}", {
            "queries": [q.query_id for q in queries],
            "offenders": sorted({q.mappa_ref for q in queries}),
        })  # fmt: skip
    if args.format == "json":
        print(json.dumps([q.to_json(now) for q in queries], indent=2))
        return EXIT_OK
    state = "" if args.all else "open "
    print(f"{len(queries)} {state}data-quality quer{'y' if len(queries) == 1 else 'ies'} "
          f"in {args.area}, oldest first")  # fmt: skip
    for query in queries:
        ended = ""
        if query.cleared_at:
            ended = f"  [cleared {query.cleared_at} by event {query.cleared_by_event_id}]"
        elif query.closed_at:
            ended = f"  [closed {query.closed_at} by {query.closed_by}: {query.note}]"
        print(f"\n- {query.query_id}  {query.kind}  {query.mappa_ref}  "
              f"{query.age_days(now)} days old{ended}")  # fmt: skip
        print(f"    {query.reason}")
        print(f"    raised by {query.about_event_type} {query.about_event_id}, occurred "
              f"{query.about_occurred_at}; raised {query.raised_at}")  # fmt: skip
    return EXIT_OK


def _return(args: argparse.Namespace, settings: Settings) -> int:
    from projections.statistical_return.formats import format_csv, format_html
    from projections.statistical_return.layouts import format_markdown
    from projections.statistical_return.projection import statistical_return

    if args.national:
        return _national_return(args, settings)
    if not args.area:
        raise UsageError("return: --area is required (or --national for the national figures)")
    if args.diff_as_known_on:
        return _return_diff(args, settings)
    as_known_on = _moment(args.as_known_on) if args.as_known_on else None
    with _reading(settings) as tracker, tracker.views.transaction() as tx:
        population = tracker.areas.population_for(args.area, args.year)
        try:
            result = statistical_return(
                tx, args.area, args.year, args.layout, as_known_on, population
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
        _audited(tx, "return.read", f"area:{args.area}/year:{args.year}")
        area = tracker.areas.get(args.area)
    name = area.name if area else None
    if args.format == "json":
        print(json.dumps(result, indent=2))
    elif args.format == "csv":
        print(format_csv(result), end="")
    elif args.format == "html":
        print(format_html(result, name), end="")
    else:
        print(format_markdown(result, name))
    return EXIT_OK


def _national_return(args: argparse.Namespace, settings: Settings) -> int:
    """``mappa return --national --year Y``: tables 1, 2, 3 and 5 of the national overview."""
    from projections.statistical_return.national import (
        format_national_csv,
        format_national_markdown,
        national_tables_from_store,
        store_areas,
    )

    if args.diff_as_known_on:
        raise UsageError("return: --diff-as-known-on compares one area's return; drop --national")
    if args.format == "html":
        raise UsageError("return --national: --format is md, json or csv")
    as_known_on = _moment(args.as_known_on) if args.as_known_on else None
    with _reading(settings) as tracker, tracker.views.transaction() as tx:
        # Every area with offenders in the store, and every area of the reference data.
        areas = sorted({*store_areas(tx), *(area.code for area in tracker.areas.areas)})
        if args.area:
            areas = [args.area]
        try:
            tables = national_tables_from_store(
                tx, areas, args.year, tracker.areas.population_for, args.layout, as_known_on
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
        _audited(tx, "national.read", f"national/year:{args.year}")
    if args.format == "json":
        print(json.dumps(tables, indent=2))
    elif args.format == "csv":
        print(format_national_csv(tables), end="")
    else:
        print(format_national_markdown(tables))
    return EXIT_OK


def _return_diff(args: argparse.Namespace, settings: Settings) -> int:
    """``mappa return --diff-as-known-on A B``: the figures that differ and what moved them."""
    from projections.statistical_return.explain import (
        area_histories,
        diff_as_known_on,
        format_diff_text,
    )

    if args.as_known_on:
        raise UsageError("return: give either --as-known-on or --diff-as-known-on, not both")
    if args.format not in ("md", "json"):
        raise UsageError("return --diff-as-known-on: --format is md (text) or json")
    first, second = args.diff_as_known_on
    a = _known_on_or_now(first, "--diff-as-known-on")
    b = _known_on_or_now(second, "--diff-as-known-on")
    with _reading(settings) as tracker, tracker.views.transaction() as tx:
        histories = area_histories(tx, args.area)
        population = tracker.areas.population_for(args.area, args.year)
        try:
            changes = diff_as_known_on(
                histories, args.area, args.year, args.layout, a, b, population
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
        offenders = sorted({o.reference for change in changes for o in change.offenders})
        _audited(tx, "diff.read", f"area:{args.area}/year:{args.year}", {"offenders": offenders})
    if args.format == "json":
        print(
            json.dumps(
                {
                    "area": args.area,
                    "year": args.year,
                    "a": None if a is None else a.isoformat(),
                    "b": None if b is None else b.isoformat(),
                    "changes": [change.to_json() for change in changes],
                },
                indent=2,
            )
        )
    else:
        print(format_diff_text(changes, args.area, args.year, first, second), end="")
    return EXIT_OK


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    """``mappa explain``: the offenders (and events) behind one figure of a return."""
    from projections.statistical_return.explain import (
        UnknownFigure,
        area_histories,
        explain_figure,
        format_explanation_text,
    )

    as_known_on = _moment(args.as_known_on) if args.as_known_on else None
    with _reading(settings) as tracker, tracker.views.transaction() as tx:
        histories = area_histories(tx, args.area)
        population = tracker.areas.population_for(args.area, args.year)
        try:
            explanation = explain_figure(
                histories, args.area, args.year, args.figure, args.layout, as_known_on, population
            )
        except UnknownFigure as error:
            raise UsageError(f"explain: {error}") from None
        _audited(tx, "explain.read", f"area:{args.area}/year:{args.year}/figure:{args.figure}",
                 {"offenders": [o.reference for o in explanation.offenders]})  # fmt: skip
    if args.format == "json":
        print(json.dumps(explanation.to_json(), indent=2))
    else:
        print(format_explanation_text(explanation), end="")
    return EXIT_OK


def _known_on_or_now(text: str, option: str) -> datetime | None:
    """An ISO moment with its offset, or ``now`` (None: everything recorded so far)."""
    if text.strip().lower() == "now":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option}: expected an ISO 8601 moment or 'now', got {text!r}") from None
    if moment.tzinfo is None:
        raise UsageError(f"{option}: give a UTC offset, e.g. {text}+00:00")
    return moment


def _alerts(args: argparse.Namespace, settings: Settings) -> int:
    from projections.victim_alerts.projection import (
        AlertNotFound,
        alerts_for,
        mark_done,
        open_alert_counts,
    )

    if args.action == "done":
        if not args.alert_id or not args.by:
            raise UsageError("usage: mappa alerts done ALERT_ID --by NAME [--vlo REF]")
        with _reading(settings) as tracker, tracker.views.transaction() as tx:
            try:
                changed = mark_done(tx, args.alert_id, args.vlo, args.by, datetime.now(UTC))
                _audited(tx, "alert.done", f"alert:{args.alert_id}",
                         {"changed": changed, "by": args.by})  # fmt: skip
            except AlertNotFound:
                print(f"mappa: no alert {args.alert_id} for you", file=sys.stderr)
                return EXIT_REJECTED
        print(f"alert {args.alert_id} " + ("marked done" if changed else "was already done"))
        return EXIT_OK
    if args.recipients:
        with _reading(settings) as tracker, tracker.views.transaction() as tx:
            counts = open_alert_counts(tx)
        print(f"{'recipient':<32}{'open':>6}{'all':>6}")
        for name, open_count, total in counts:
            print(f"{name:<32}{open_count:>6}{total:>6}")
        return EXIT_OK
    recipient = args.vlo or (f"coordinator:{args.coordinator}" if args.coordinator else None)
    if not recipient:
        raise UsageError("say whose alerts: --vlo REF or --coordinator AREA")
    with _reading(settings) as tracker, tracker.views.transaction() as tx:
        alerts = alerts_for(tx, recipient, include_done=args.all)
        target = f"vlo:{recipient}" if args.vlo else recipient
        _audited(tx, "alerts.read", target, {
            "alerts": [a.alert.alert_id for a in alerts],
            "offenders": sorted({a.alert.offender_ref for a in alerts}),
        })  # fmt: skip
    shown = alerts[: args.limit] if args.limit else alerts
    if args.format == "json":
        print(json.dumps([a.to_json() for a in shown], indent=2))
        return EXIT_OK
    state = "all" if args.all else "open"
    more = f" (showing {len(shown)})" if len(shown) < len(alerts) else ""
    print(f"{len(alerts)} {state} alert(s) for {recipient}, oldest first{more}")
    for raised in shown:
        alert = raised.alert
        done = f"  [done by {raised.done_by} at {raised.done_at}]" if raised.done_at else ""
        print(f"\n- {alert.alert_id}  {alert.kind}  {alert.offender_ref}", end="")
        print(f"  occurred {alert.occurred_at}{done}")
        for line in alert.message.splitlines():
            print(f"    {line}")
    return EXIT_OK


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.runtime import Shutdown, Stopped, with_retries
    from infra import bootstrap as processes

    if not settings.kafka_bootstrap:
        raise UsageError("mappa run needs the Kafka pipeline: set MAPPA_KAFKA_BOOTSTRAP")
    if args.process == "project" and not args.name:
        raise UsageError("mappa run project NAME: caseload, statistical-return or victim-alerts")
    if args.processes != 1:
        return _run_several(args, settings)
    shutdown = Shutdown().install()
    share = _relay_share(args)
    builders: dict[str, Callable[[Tracker], Any]] = {
        "ingest": processes.inbound_consumer,
        "relay": lambda tracker: processes.relay(tracker, share),
        "publish-alerts": processes.alert_publisher,
        "project": lambda tracker: processes.projector(tracker, args.name),
    }
    try:
        # The database or the broker may not be up yet (or restarting): wait for them.
        tracker = with_retries(lambda: bootstrap(settings), shutdown, "open the store")
        try:
            if args.process == "project":
                try:
                    tracker.writer(args.name)
                except KeyError as error:
                    raise UsageError(error.args[0]) from None
            process = with_retries(
                lambda: builders[args.process](tracker), shutdown, "connect to Kafka"
            )
            process.run(shutdown)
        finally:
            tracker.close()
    except Stopped:
        pass
    return EXIT_OK


# The processes that share their work: through a consumer group, or (the relay) each
# publishing a share of the offenders. The publisher reads the alerts' one sequence in
# order, so it runs once.
_SHARED = ("ingest", "project", "relay")


def _run_several(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.runtime import Shutdown
    from infra.process import run_several

    if args.processes < 1:
        raise UsageError(f"--processes: expected 1 or more, got {args.processes}")
    if args.process not in _SHARED:
        raise UsageError(
            f"--processes: only ingest, project and relay share their work; "
            f"{args.process} runs as one process"
        )
    if args.share:
        raise UsageError("--share is what --processes gives each copy: give one or the other")
    if args.process == "relay" and not settings.database_url:
        raise UsageError("--processes: on SQLite the relay runs as one process (one writer)")
    argv = [sys.executable, "-m", "infra.cli", "run", args.process]
    if args.name:
        argv.append(args.name)
    count = args.processes

    def share_of_copy(n: int) -> list[str]:
        return ["--share", f"{n + 1}/{count}"] if args.process == "relay" else []

    return run_several(argv, count, Shutdown().install(), share_of_copy)


def _relay_share(args: argparse.Namespace) -> RelayShare:
    """``--share K/N`` (K from 1): the relay's part of the offenders."""
    if not args.share:
        return EVERY_OFFENDER
    if args.process != "relay":
        raise UsageError(f"--share: only the relay shares out offenders, not {args.process}")
    part, _, parts = str(args.share).partition("/")
    if not (part.isdigit() and parts.isdigit() and 1 <= int(part) <= int(parts)):
        raise UsageError(f"--share: expected K/N with 1 <= K <= N, got {args.share!r}")
    return RelayShare(int(part) - 1, int(parts))


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    """Send an interchange file to the inbound topic, keyed by MAPPA reference, line by line
    (bad lines too: the ingest process must dead-letter them, not this command)."""
    from infra.bootstrap import topics
    from infra.kafka import ensure_topics, producer

    if not settings.kafka_bootstrap:
        raise UsageError("mappa produce needs MAPPA_KAFKA_BOOTSTRAP")
    names = topics(settings)
    ensure_topics(settings.kafka_bootstrap, names)
    sender = producer(settings.kafka_bootstrap, linger_ms=20)
    sent = 0
    with Path(args.file).open("rb") as lines:
        for raw in lines:
            value = raw.rstrip(b"\n")
            if not value.strip():
                continue
            sender.send(names.inbound, key=_mappa_key(value), value=value)
            sent += 1
    sender.flush()
    sender.close()
    print(f"sent {sent} messages to {names.inbound}", file=sys.stderr)
    return EXIT_OK


def _mappa_key(value: bytes) -> bytes | None:
    try:
        identifiers = json.loads(value)["personReference"]["identifiers"]
        return next(i["value"] for i in identifiers if i["type"] == "MAPPA").encode()
    except Exception:
        return None  # an unreadable document still goes in; ingest dead-letters it


def _status(args: argparse.Namespace, settings: Settings) -> int:
    with _reading(settings, catch_up=False) as tracker:
        head = tracker.max_notification_id()
        status: dict[str, Any] = {
            "store": "postgresql" if settings.database_url else f"sqlite ({settings.data_dir})",
            "events_stored": head,
            "projections": {
                name: {"positions": writer.positions()} for name, writer in tracker.writers.items()
            },
        }
        if settings.kafka_bootstrap:
            status["consumer_groups"] = _lags(settings, list(tracker.writers))
    print(json.dumps(status, indent=2))
    return EXIT_OK


def _lags(settings: Settings, projections: list[str]) -> dict[str, Any]:
    from infra.bootstrap import topics
    from infra.kafka import group_lag

    assert settings.kafka_bootstrap is not None
    names = topics(settings)
    groups = {names.group("ingest"): [names.inbound]}
    groups.update({names.group(f"projector-{p}"): [names.offender_events] for p in projections})
    report: dict[str, Any] = {}
    for group, group_topics in groups.items():
        lags = group_lag(settings.kafka_bootstrap, group, group_topics)
        report[group] = {
            "lag": sum(p.lag for p in lags),
            "partitions": {f"{p.topic}-{p.partition}": p.lag for p in lags},
        }
    return report


# --- the HTTP service and its access control ------------------------------------------


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from infra.http.server import serve

    port = settings.http_port if args.port is None else args.port
    serve(settings, args.host or settings.http_host, port)
    return EXIT_OK


def _audited(
    tx: Transaction, action: str, target: str, detail: Mapping[str, Any] | None = None
) -> None:
    """Put a read or a change made at the command line on the audit trail, in the same
    transaction and with the same names as the web service does (the person running the
    command as ``cli:USER``, an operator): a record read from a shell is still a read."""
    from infra.http.audit import append

    append(tx, datetime.now(UTC), _operator(), action, target, detail=detail)


def _operator() -> Any:
    """The person at the command line, as the audit trail names them."""
    import getpass

    from infra.http.audit import Actor

    user = getpass.getuser()
    return Actor(f"cli:{user}", user, "operator")


def _tokens(args: argparse.Namespace, settings: Settings) -> int:
    from infra.http.access import InvalidScope, Role
    from infra.http.services import Limits, Services

    tracker = bootstrap(settings)
    try:
        services = Services(tracker, Limits())
        services.create_tables()
        if args.action == "issue":
            if not args.role or not args.name:
                raise UsageError("usage: mappa tokens issue --role ROLE --scope SCOPE --name NAME")
            try:
                issued = services.issue_token(_operator(), Role(args.role), args.scope, args.name)
            except InvalidScope as error:
                raise UsageError(f"tokens issue: {error}") from None
            record = issued.record
            print(
                f"issued {record.token_id} ({record.role} {record.scope}) to {record.name}; "
                "the token is printed once, below: keep it secret",
                file=sys.stderr,
            )
            print(issued.secret)
        elif args.action == "revoke":
            if not args.token_id:
                raise UsageError("usage: mappa tokens revoke TOKEN_ID")
            revoked = services.revoke_token(_operator(), args.token_id)
            if revoked is None:
                print(f"mappa: no token {args.token_id}", file=sys.stderr)
                return EXIT_REJECTED
            print(f"token {revoked.token_id} revoked at {revoked.revoked_at}")
        else:
            records = services.list_tokens(_operator())
            if args.format == "json":
                print(json.dumps([r.to_json() for r in records], indent=2))
            else:
                print(f"{'id':<18}{'role':<9}{'scope':<22}{'issued':<27}{'revoked':<27}name")
                for r in records:
                    print(f"{r.token_id:<18}{r.role:<9}{r.scope[:21]:<22}{r.issued_at:<27}"
                          f"{r.revoked_at or '-':<27}{r.name}")  # fmt: skip
    finally:
        tracker.close()
    return EXIT_OK


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from infra.http.services import Limits, Services

    if args.limit < 1 or args.after < 0:
        raise UsageError("audit: --limit is 1 or more, --after 0 or more")
    tracker = bootstrap(settings)
    try:
        services = Services(tracker, Limits())
        services.create_tables()
        entries = services.audit_entries(_operator(), args.after, args.limit)
    finally:
        tracker.close()
    if args.format == "json":
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return EXIT_OK
    for e in entries:
        detail = f"  {json.dumps(e.detail, sort_keys=True)}" if e.detail else ""
        print(f"{e.sequence:>6}  {e.at}  {e.actor_name} ({e.actor}, {e.role})  {e.action}  "
              f"{e.target}  {e.outcome}{detail}")  # fmt: skip
    return EXIT_OK


# --- helpers -------------------------------------------------------------------------


class _reading:
    """Open the tracker for a query; in embedded mode, bring the views up to date first."""

    def __init__(self, settings: Settings, catch_up: bool = True) -> None:
        self.settings = settings
        self.catch_up = catch_up

    def __enter__(self) -> Tracker:
        from infra.http.audit import AuditTrail

        self.tracker = bootstrap(self.settings)
        # What a command reads or changes goes on the audit trail (``_audited``).
        AuditTrail(self.tracker.views, lambda: datetime.now(UTC)).create_tables()
        if self.catch_up and not self.settings.kafka_bootstrap:
            try:
                self.tracker.catch_up()
            except ProjectionsBehind as behind:
                # The views that are up to date still answer; the warning says which not.
                _warn_behind(behind)
        return self.tracker

    def __exit__(self, *exc: object) -> None:
        self.tracker.close()


def _bar(total: int, desc: str, unit: str, enabled: bool, initial: int = 0) -> Any:
    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
        disable=not enabled, leave=False, dynamic_ncols=True,
    )  # fmt: skip


def _years(text: str) -> tuple[int, int]:
    try:
        first, _, last = text.partition("-")
        return int(first), int(last or first)
    except ValueError:
        raise UsageError(f"--years: expected FIRST-LAST such as 2001-2009, got {text!r}") from None


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _moment(text: str) -> datetime:
    """An ISO 8601 moment. Without an offset it is Europe/London time (the contract's
    zone); a bare date means the end of that day there: what was known on that date."""
    from zoneinfo import ZoneInfo

    london = ZoneInfo("Europe/London")
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            return datetime.combine(day + timedelta(days=1), datetime.min.time(), london)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-known-on: expected an ISO 8601 moment, got {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=london)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mappa",
        description="MAPPA offender lifecycle tracker: ingest agencies' events, and read the "
        "live caseload, the 31 March statistical return and victim alerts.",
        epilog="Store: SQLite under $MAPPA_DATA_DIR (default ~/.local/share/mappa), or "
        "PostgreSQL when $MAPPA_DATABASE_URL is set. Logs as JSON with MAPPA_LOG_FORMAT=json.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[..., int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    command("schema", _schema, "print the JSON Schema of the interchange format")

    gen = command("generate", _generate, "write a realistic, deterministic interchange history")
    gen.add_argument("--area", default="WM", help="home MAPPA area code (default WM)")
    gen.add_argument("--years", default="2001-2009", help="reporting years, e.g. 2001-2009")
    gen.add_argument("--offenders", type=int, default=2000, help="number of offenders")
    gen.add_argument("--seed", type=int, default=1, help="random seed (same seed, same file)")
    gen.add_argument("--out", default="history.jsonl", help="output file (.jsonl)")

    ing = command("ingest", _ingest, "ingest an interchange .jsonl file")
    ing.add_argument("file", help="one interchange document per line")
    ing.add_argument("--json", action="store_true", help="print the summary as JSON")
    ing.add_argument("--quiet", action="store_true", help="no progress bars")

    reb = command("rebuild", _rebuild, "rebuild a projection from zero")
    reb.add_argument("name", help="caseload, statistical-return, victim-alerts or all")
    reb.add_argument("--quiet", action="store_true", help="no progress bars")
    reb.add_argument(
        "--projectors-stopped",
        action="store_true",
        help="with Kafka configured, do not ask the broker whether the projection's Kafka "
        "projectors are running (by default the rebuild is refused while any is)",
    )
    reb.add_argument(
        "--jobs",
        type=int,
        help="processes replaying the event store at once, each a share of the offenders "
        "into every projection rebuilt (default: one per core on PostgreSQL; SQLite takes "
        "one writer at a time, so 1 there)",
    )

    case = command(
        "caseload", _caseload, "the caseload of an area, now or as it stood on a past date"
    )
    case.add_argument("--area", required=True, help="MAPPA area code, e.g. WM")
    case.add_argument("--bcu", help="one basic command unit of the area ('unknown': none known)")
    case.add_argument(
        "--on",
        help="YYYY-MM-DD: the caseload as it stood at the end of that day (Europe/London), "
        "folded from the histories; default: now, from the live view",
    )
    case.add_argument(
        "--within", type=int, default=90,
        help="days: due for release in the next N days, recalled in the last N (default 90)",
    )  # fmt: skip
    case.add_argument("--format", choices=("table", "json", "csv"), default="table")

    queries = command(
        "queries", _queries, "data-quality queries of an area (inconsistent facts accepted)"
    )
    queries.add_argument("action", nargs="?", choices=("list", "close"), default="list")
    queries.add_argument("query_id", nargs="?", help="with 'close': the query to close")
    queries.add_argument("--area", help="MAPPA area code, e.g. WM: the queries of its offenders")
    queries.add_argument("--all", action="store_true", help="cleared and closed queries too")
    queries.add_argument("--by", help="with 'close': who closes it")
    queries.add_argument("--note", help="with 'close': why (kept on record)")
    queries.add_argument("--format", choices=("table", "json"), default="table")

    ret = command("return", _return, "the 31 March statistical return of an area and year")
    ret.add_argument("--area", help="MAPPA area code, e.g. WM (required unless --national)")
    ret.add_argument(
        "--year", type=_reporting_year, required=True, help="first calendar year: 2004 = 2004/05"
    )
    ret.add_argument("--layout", choices=("2004", "2008"), help="default: by year")
    ret.add_argument("--as-known-on", help="count only what was recorded by then (ISO moment)")
    ret.add_argument(
        "--format",
        choices=("json", "md", "csv", "html"),
        default="md",
        help="md (default), json (the contract's keys), csv (one row per figure), html "
        "(a self-contained page with charts 1 and 2)",
    )
    ret.add_argument("--areas", help="areas reference data file (default $MAPPA_AREAS or shipped)")
    ret.add_argument(
        "--national",
        action="store_true",
        help="the national overview's tables 1, 2, 3 and 5 summed over every area, with the "
        "change from the previous year",
    )
    ret.add_argument(
        "--diff-as-known-on",
        nargs=2,
        metavar=("A", "B"),
        help="list each figure that differs between the return as known on A and on B (ISO "
        "moments or 'now') and the events recorded in between that moved it",
    )

    expl = command("explain", _explain, "the offenders and events behind one figure of a return")
    expl.add_argument("--area", required=True, help="MAPPA area code, e.g. WM")
    expl.add_argument(
        "--year", type=_reporting_year, required=True, help="first calendar year: 2004 = 2004/05"
    )
    expl.add_argument(
        "--figure", required=True, help="a figure path: i, i_by_bcu.Hereford, iii.c, "
        "viii.level3.cat1, ix.level2.a, ..."
    )  # fmt: skip
    expl.add_argument("--layout", choices=("2004", "2008"), help="default: by year")
    expl.add_argument("--as-known-on", help="count only what was recorded by then (ISO moment)")
    expl.add_argument("--format", choices=("text", "json"), default="text")
    expl.add_argument("--areas", help="areas reference data file (default $MAPPA_AREAS or shipped)")

    alerts = command("alerts", _alerts, "victim alerts: list a VLO's, or mark one done")
    alerts.add_argument("action", nargs="?", choices=("list", "done"), default="list")
    alerts.add_argument("alert_id", nargs="?", help="with 'done': the alert to mark done")
    alerts.add_argument("--vlo", help="the victim liaison officer's reference")
    alerts.add_argument("--coordinator", help="an area code: its MAPPA co-ordinator's alerts")
    alerts.add_argument("--all", action="store_true", help="done alerts too (the history)")
    alerts.add_argument("--by", help="with 'done': who did it")
    alerts.add_argument("--limit", type=int, help="show at most this many")
    alerts.add_argument(
        "--recipients", action="store_true", help="list who has alerts, busiest first"
    )
    alerts.add_argument("--format", choices=("text", "json"), default="text")

    command("status", _status, "what is stored, each projection's position, each group's lag")

    run = command("run", _run, "run a process of the Kafka pipeline until SIGTERM")
    run.add_argument("process", choices=("ingest", "relay", "project", "publish-alerts"))
    run.add_argument("name", nargs="?", help="with 'project': the projection to run")
    run.add_argument(
        "--processes",
        type=int,
        default=1,
        help="ingest and project: run this many copies in one consumer group, sharing the "
        "topic's partitions (one per core; up to the partition count, 6 by default); "
        "relay (PostgreSQL only): this many copies, each publishing a share of the offenders",
    )
    run.add_argument(
        "--share",
        metavar="K/N",
        help="relay: publish only the K-th of N shares of the offenders (what --processes N "
        "gives each copy; each share keeps its own position)",
    )

    produce = command("produce", _produce, "send an interchange file to the inbound topic")
    produce.add_argument("file", help="one interchange document per line")

    serve = command("serve", _serve, "serve the JSON API and the pages over HTTP")
    serve.add_argument("--host", help="address to listen on (default $MAPPA_HTTP_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default $MAPPA_HTTP_PORT, 8000)")

    tokens = command("tokens", _tokens, "issue, revoke and list the HTTP service's tokens")
    tokens.add_argument("action", nargs="?", choices=("issue", "revoke", "list"), default="list")
    tokens.add_argument("token_id", nargs="?", help="with 'revoke': the token's id (tok_...)")
    tokens.add_argument("--role", choices=("sender", "vlo", "unit", "analyst", "admin"))
    tokens.add_argument(
        "--scope", help="sender: AGENCY:AREA; vlo: a VLO reference; unit: an area; analyst: '*' "
        "or an area; admin: '*' or none"
    )  # fmt: skip
    tokens.add_argument("--name", help="who or what holds the token")
    tokens.add_argument("--format", choices=("table", "json"), default="table")

    audit = command("audit", _audit, "the audit trail: who read or changed what, and when")
    audit.add_argument("--after", type=int, default=0, help="entries after this sequence number")
    audit.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    audit.add_argument("--format", choices=("text", "json"), default="text")
    return parser


if __name__ == "__main__":
    sys.exit(main())
