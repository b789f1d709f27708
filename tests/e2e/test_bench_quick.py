"""``scripts/bench --quick`` as a smoke test: every figure is produced (nothing about values)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import database_url_for_tests
from tests.e2e.pipeline import kafka_bootstrap

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_quick_bench_produces_every_figure(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        MAPPA_BENCH_DATABASE_URL=database_url_for_tests(),
        MAPPA_BENCH_KAFKA_BOOTSTRAP=kafka_bootstrap(),
    )
    result = subprocess.run(
        [str(REPO / "scripts" / "bench"), "--quick", "--output-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    document = json.loads((tmp_path / "benchmarks.json").read_text())
    figures = document["figures"]
    expected = {
        "anchor.pg_copy",
        "anchor.pg_insert",
        "anchor.kafka_produce",
        "anchor.kafka_consume",
        "anchor.consume_store",
        "anchor.peer",
        "ingest.rate",
        "relay.rate",
        "rebuild.all.rate",
        "alerts.p50",
        "alerts.p99",
        "return.area",
        "return.national",
        "memory.ingest",
        "memory.relay",
        "memory.publish-alerts",
        "memory.rebuild",
    }
    assert expected <= set(figures)
    for prefix in ("project.", "rebuild.", "memory.project."):
        assert any(key.startswith(prefix) for key in figures), prefix
    not_numbers = {
        key: entry["value"]
        for key, entry in figures.items()
        if not isinstance(entry["value"], int | float) or isinstance(entry["value"], bool)
    }
    assert not not_numbers, f"figures not produced: {not_numbers}"
    assert document["meta"]["errors"] == []

    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    for entry in figures.values():
        assert entry["label"] in markdown
