"""On a broker that has never seen a consumer group, asking about groups is answered.

A fresh broker creates ``__consumer_offsets`` on the first question about any group, and
says "coordinator not available" (then "not coordinator") for a second or so. CI's first
e2e test asked for a group's lag 0.3 s after its broker started and failed on that. Each
test here starts a brand-new broker of its own (scripts/kafka with its own run dir and
ports, about 10 s) so that its question is the first the broker is asked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.kafka import Topics, ensure_topics, group_lag, group_members
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka"


@pytest.fixture
def brand_new_broker(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    environment = {
        **os.environ,
        "MAPPA_KAFKA_RUN_DIR": str(tmp_path / "kafka"),
        "MAPPA_KAFKA_PORT": str(port),
        "MAPPA_KAFKA_CONTROLLER_PORT": str(free_port()),
        "MAPPA_PYTHON": sys.executable,
    }

    def script(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), command], env=environment, capture_output=True, text=True,
            timeout=180, check=False,
        )  # fmt: skip

    started = script("start")
    try:
        assert started.returncode == 0, started.stderr
        yield f"127.0.0.1:{port}"
    finally:
        stopped = script("stop")
        assert stopped.returncode == 0, stopped.stderr


def test_the_lag_of_a_group_is_reported_on_a_broker_that_has_never_seen_a_group(
    brand_new_broker: str,
) -> None:
    topics = Topics(prefix=f"fresh_{uuid.uuid4().hex[:8]}.")
    ensure_topics(brand_new_broker, topics)

    lags = group_lag(brand_new_broker, topics.group("ingest"), [topics.inbound])

    assert [(lag.partition, lag.committed, lag.lag) for lag in lags] == [
        (partition, None, 0) for partition in range(topics.inbound_partitions)
    ]


def test_a_rebuild_is_allowed_on_a_broker_that_has_never_seen_a_group(
    brand_new_broker: str, tmp_path: Path
) -> None:
    """The rebuild first asks the broker whether projectors run: a broker still creating
    its offsets topic must not make it refuse ("the broker did not answer")."""
    embedded = {name: value for name, value in os.environ.items() if not name.startswith("MAPPA_")}
    rebuilt = subprocess.run(
        [str(Path(sys.executable).with_name("mappa")), "rebuild", "all", "--quiet"],
        env={
            **embedded,
            "MAPPA_DATA_DIR": str(tmp_path / "embedded"),
            "MAPPA_KAFKA_BOOTSTRAP": brand_new_broker,
        },
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert group_members(brand_new_broker, ["projector-caseload"]) == {"projector-caseload": 0}
