"""The bench's process table: waiting for what a process logged since it was started."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infra.bench.system import Processes


def test_waiting_for_a_log_line_sees_only_what_the_latest_start_wrote(tmp_path: Path) -> None:
    processes = Processes(env={}, logs=tmp_path)
    try:
        say = [sys.executable, "-c", "import sys; print(sys.argv[1], flush=True)"]
        processes.start("ingest", [*say, "partitions assigned"])
        assert processes.wait("ingest", timeout=30) == 0
        # Started again under the same label (the same log file): the earlier line, still in
        # the file, says nothing about this start.
        processes.start("ingest", [sys.executable, "-c", "import time; time.sleep(30)"])
        with pytest.raises(TimeoutError, match="did not log 'partitions assigned'"):
            processes.wait_for_log("ingest", "partitions assigned", timeout=1)
        processes.stop("ingest")
        say_and_stay = "import sys, time; print(sys.argv[1], flush=True); time.sleep(30)"
        processes.start("ingest", [sys.executable, "-c", say_and_stay, "partitions assigned"])
        processes.wait_for_log("ingest", "partitions assigned", timeout=30)
    finally:
        processes.close()
