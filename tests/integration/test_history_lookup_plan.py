"""How PostgreSQL finds a batch's histories, alerts and queries on record, even with statistics
from before a projection had any rows (a new or rebuilt projection, before autovacuum has
analysed the table again)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from infra.bootstrap import Tracker, bootstrap
from projections.base import (
    HISTORY_ROWS_ON_POSTGRES,
    PRUNE_SHARED_HISTORIES,
    ROWS_OF_OFFENDERS_ON_POSTGRES,
    prune_shared_histories,
)
from projections.data_quality.projection import _COLUMNS as _QUERY_COLUMNS
from projections.data_quality.projection import _stored_rows
from projections.ports import Transaction
from projections.victim_alerts.projection import _ALERT_FIELDS, _raised_for
from tests.conftest import _create_schema, _drop_schema, settings_for


@pytest.fixture
def postgres_tracker(tmp_path: Path) -> Iterator[Tracker]:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    _create_schema(schema)
    tracker = bootstrap(settings_for("postgres", tmp_path, schema=schema))
    try:
        yield tracker
    finally:
        tracker.close()
        _drop_schema(schema)


def ids(count: int) -> list[str]:
    return [hashlib.md5(str(n).encode()).hexdigest() for n in range(1, count + 1)]


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
@pytest.mark.parametrize("wanted", [3, 40, 500])
def test_histories_are_looked_up_by_the_whole_key_even_with_stale_statistics(
    postgres_tracker: Tracker, plan_cache_mode: str, wanted: int
) -> None:
    with postgres_tracker.views.transaction() as tx:
        tx.execute(
            "INSERT INTO projection_histories SELECT 'caseload', md5(n::text), 'WM-1', 1, '[]' "
            "FROM generate_series(1, 5000) AS n"
        )
        tx.execute("ANALYZE projection_histories")  # statistics: one projection only
        tx.execute(
            "INSERT INTO projection_histories SELECT 'victim-alerts', md5(n::text), 'WM-1', 1, "
            "'[]' FROM generate_series(1, 5000) AS n"
        )
        tx.execute(f"SET LOCAL plan_cache_mode = {plan_cache_mode}")
        statement = HISTORY_ROWS_ON_POSTGRES.format(columns="version")
        tx.execute("EXPLAIN " + statement, (ids(wanted), "victim-alerts"))
        plan = "\n".join(str(row[0]) for row in tx.fetchall())
        tx.execute(statement, (ids(wanted), "victim-alerts"))
        found = tx.fetchall()
    assert "Index Cond: ((projection = " in plan and "offender_id = wanted.offender_id" in plan
    assert "Filter" not in plan and "Seq Scan on projection_histories" not in plan
    assert sorted(str(row[0]) for row in found) == sorted(ids(wanted))


def test_histories_are_stored_compressed_with_lz4_when_the_server_has_it(
    postgres_tracker: Tracker,
) -> None:
    # pglz, PostgreSQL's default, cost a projector a third of its database time: each batch
    # rewrites the histories it adds to, and each is compressed again (see BENCHMARKS.md).
    history = json.dumps([{"eventId": str(n), "description": "x" * 40} for n in range(200)])
    with postgres_tracker.views.transaction() as tx:
        tx.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        row = tx.fetchone()
        assert row is not None and row[0], "this PostgreSQL was built without lz4"
        tx.execute(
            "INSERT INTO projection_histories VALUES ('caseload', 'someone', 'WM-1', 1, %s)",
            (history,),
        )
        tx.execute(
            "SELECT pg_column_compression(history), pg_column_size(history) < length(history) "
            "FROM projection_histories WHERE offender_id = 'someone'"
        )
        assert tx.fetchone() == ("lz4", True)
    # Opening the store again (tables "created" again) leaves the setting as it is.
    postgres_tracker.writers["caseload"].create_tables()
    with postgres_tracker.views.transaction() as tx:
        tx.execute(
            "SELECT attcompression FROM pg_attribute "
            "WHERE attrelid = 'projection_histories'::regclass AND attname = 'history'"
        )
        assert tx.fetchone() == ("l",)


def plan_of_lookup_after_stale_statistics(
    tx: Transaction, table: str, columns: Sequence[str], rows: str, plan_cache_mode: str
) -> str:
    """Analyse ``table`` empty, insert 20,000 ``rows`` (four per offender of ``ids(5000)``)
    and give the plan of looking up 500 offenders' rows."""
    tx.execute(f"ANALYZE {table}")  # statistics of an empty table
    tx.execute(f"INSERT INTO {table} {rows} FROM generate_series(1, 20000) AS n")
    tx.execute(f"SET LOCAL plan_cache_mode = {plan_cache_mode}")
    statement = ROWS_OF_OFFENDERS_ON_POSTGRES.format(columns=", ".join(columns), table=table)
    tx.execute("EXPLAIN " + statement, (ids(500),))
    return "\n".join(str(row[0]) for row in tx.fetchall())


# Each projector reads, at every batch, the rows on record of every offender it judges: a scan
# of the whole table each time made the victim-alerts projector's database time 3-4 times what
# it is with the index (BENCHMARKS.md). Alerts and queries are kept once raised: both tables
# only grow.
RECORDS = {
    "victim_alerts": (
        _ALERT_FIELDS,
        "SELECT 'alert-' || n, md5((n %% 5000 + 1)::text), 'release', 'vlo-1', 'V-1', "
        "'WM-1', 'WM', 'event-' || n, 'custody.released', '2026-01-01T00:00:00+00:00', "
        "'2026-01-01T00:00:00+00:00', 0, 'released', '{}', NULL, "
        "'2026-01-01T00:00:00+00:00', NULL, NULL, n",
        _raised_for,
    ),
    "data_quality_queries": (
        _QUERY_COLUMNS,
        "SELECT 'query-' || n, md5((n %% 5000 + 1)::text), 'WM-1', 'WM', "
        "'release-without-custody', 'released', 'event-' || n, 'custody.released', "
        "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', "
        "'2026-01-01T00:00:00+00:00', 1, NULL, NULL",
        _stored_rows,
    ),
}


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
@pytest.mark.parametrize("table", sorted(RECORDS))
def test_rows_on_record_are_looked_up_by_offender_even_with_stale_statistics(
    postgres_tracker: Tracker, plan_cache_mode: str, table: str
) -> None:
    columns, rows, read = RECORDS[table]
    with postgres_tracker.views.transaction() as tx:
        plan = plan_of_lookup_after_stale_statistics(tx, table, columns, rows, plan_cache_mode)
        found = read(tx, ids(500))
    assert f"Seq Scan on {table}" not in plan and "wanted.offender_id" in plan
    assert sorted(found) == sorted(ids(500))
    assert all(len(records) == 4 for records in found.values())


def test_shared_histories_are_pruned_in_one_pass_even_with_stale_statistics(
    postgres_tracker: Tracker,
) -> None:
    # A rebuild's reset deletes every history of the projections, and autovacuum may analyse
    # the tables then: no rows, in pages not yet vacuumed. Planned with those statistics,
    # the prune walked the histories' index once for each shared copy: 14-117 s of server
    # CPU after a rebuild of 20,000 offenders, instead of a fraction of a second.
    with postgres_tracker.views.transaction() as tx:
        tx.execute(
            "INSERT INTO shared_histories SELECT md5(n::text), 1, repeat('x', 200) "
            "FROM generate_series(1, 5000) AS n"
        )
        tx.execute(
            "INSERT INTO projection_histories SELECT p, md5(n::text), 'WM-1', 1, '[]' "
            "FROM generate_series(1, 5000) AS n, unnest(ARRAY['caseload', 'data-quality']) AS p"
        )
        tx.execute("DELETE FROM projection_histories")
        tx.execute("DELETE FROM shared_histories")
        tx.execute("ANALYZE projection_histories")
        tx.execute("ANALYZE shared_histories")
        # The rebuild: a shared copy of each history, referred to by both projections, and
        # copies of an earlier one that none refers to.
        tx.execute(
            "INSERT INTO projection_histories SELECT p, md5(n::text), 'WM-1', 2, '' "
            "FROM generate_series(1, 5000) AS n, unnest(ARRAY['caseload', 'data-quality']) AS p"
        )
        tx.execute(
            "INSERT INTO shared_histories SELECT md5(n::text), v, '[]' "
            "FROM generate_series(1, 5000) AS n, generate_series(1, 2) AS v"
        )
        explained: list[str] = []

        class Explaining:
            """The transaction, explaining the prune's statement before running it."""

            dialect = "postgres"

            def execute(self, sql: str, params: Sequence[object] = ()) -> None:
                if sql == PRUNE_SHARED_HISTORIES:
                    tx.execute("EXPLAIN " + sql, params)
                    explained.extend(str(row[0]) for row in tx.fetchall())
                tx.execute(sql, params)

        prune_shared_histories(Explaining())  # type: ignore[arg-type]
        tx.execute("SELECT version, count(*) FROM shared_histories GROUP BY version")
        left = tx.fetchall()
    plan = "\n".join(explained)
    assert "Anti Join" in plan and "Nested Loop" not in plan, plan
    assert left == [(2, 5000)]  # the copies referred to kept, the others gone
