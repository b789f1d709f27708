"""Fixtures shared by the suite: a tracker on each backend, isolated per test.

SQLite trackers live in a temporary directory. PostgreSQL trackers get a fresh schema with
a random name in the database named by ``MAPPA_TEST_DATABASE_URL`` (``./scripts/test``
starts the server and sets it), so tests never see each other's rows and need no cleanup
between them. A test that needs PostgreSQL fails, never skips, when it is unreachable.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.bootstrap import Tracker, bootstrap
from infra.settings import Settings

DEFAULT_TEST_DATABASE_URL = "postgresql://mappa:mappa@127.0.0.1:5432/mappa"
BACKENDS = ("sqlite", "postgres")

TrackerFactory = Callable[..., Tracker]


def database_url_for_tests() -> str:
    return os.environ.get("MAPPA_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_for(
    backend: str, tmp_path: Path, schema: str | None = None, **overrides: object
) -> Settings:
    """Settings of an isolated tracker on ``backend`` (``schema`` shared when given)."""
    params: dict[str, object] = {"data_dir": tmp_path / "data", "kafka_bootstrap": None}
    if backend == "sqlite":
        params["database_url"] = None
    else:
        params["database_url"] = database_url_for_tests()
        params["database_schema"] = schema or f"test_{uuid.uuid4().hex[:12]}"
    params.update(overrides)
    return Settings(**params)  # type: ignore[arg-type]


def _drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _create_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(database_url_for_tests(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {database_url_for_tests()} ({error}); "
            "start it with scripts/postgres start (./scripts/test does)"
        )
    with conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tracker_factory(backend: str, tmp_path: Path) -> Iterator[TrackerFactory]:
    """Build trackers on the test's backend; every tracker it builds shares one store."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    if backend == "postgres":
        _create_schema(schema)
    built: list[Tracker] = []

    schemas = [schema]

    def make(separate_store: bool = False, **overrides: object) -> Tracker:
        """A tracker on the shared store, or (``separate_store``) on a store of its own."""
        store_schema = schema
        if separate_store:
            store_schema = f"test_{uuid.uuid4().hex[:12]}"
            overrides.setdefault("data_dir", tmp_path / store_schema)
            if backend == "postgres":
                _create_schema(store_schema)
                schemas.append(store_schema)
        tracker = bootstrap(settings_for(backend, tmp_path, store_schema, **overrides))
        built.append(tracker)
        return tracker

    yield make
    for tracker in built:
        tracker.close()
    if backend == "postgres":
        for name in schemas:
            _drop_schema(name)


@pytest.fixture
def tracker(tracker_factory: TrackerFactory) -> Tracker:
    return tracker_factory()


@pytest.fixture
def use_store(backend: str, tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> Tracker:
    """Point the command line (which reads the environment) at the test's store."""
    monkeypatch.setenv("MAPPA_DATA_DIR", str(tracker.settings.data_dir))
    if tracker.settings.database_url:
        monkeypatch.setenv("MAPPA_DATABASE_URL", tracker.settings.database_url)
        monkeypatch.setenv("MAPPA_DATABASE_SCHEMA", tracker.settings.database_schema)
    else:
        monkeypatch.delenv("MAPPA_DATABASE_URL", raising=False)
    monkeypatch.delenv("MAPPA_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("MAPPA_AREAS", raising=False)
    return tracker
