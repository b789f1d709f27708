"""`mappa run ingest|project|relay --processes N`: copies of one process, stopped together."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from consumers.runtime import Shutdown
from infra.process import run_several

# Waits for SIGTERM, then exits cleanly, as `mappa run` does; notes that it started.
CONSUMER = (
    "import signal, sys, time, pathlib\n"
    "stop = []\n"
    "signal.signal(signal.SIGTERM, lambda *_: stop.append(1))\n"
    "pathlib.Path(sys.argv[1], str(__import__('os').getpid())).touch()\n"
    "while not stop: time.sleep(0.05)\n"
)


def started(directory: Path, count: int, timeout: float = 20) -> list[int]:
    """The pids noted by ``count`` processes started (each notes its own once it handles
    SIGTERM)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p.name) for p in directory.iterdir() if p.name.isdigit()]
        if len(pids) >= count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"{count} processes did not start")


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_every_copy_runs_until_shutdown_then_each_stops_cleanly(tmp_path: Path) -> None:
    shutdown = Shutdown()
    result: list[int] = []
    runner = threading.Thread(
        target=lambda: result.append(
            run_several([sys.executable, "-c", CONSUMER, str(tmp_path)], 3, shutdown)
        )
    )
    runner.start()
    pids = started(tmp_path, 3)
    assert len(set(pids)) == 3 and all(alive(pid) for pid in pids)
    shutdown.request()
    runner.join(timeout=30)
    assert result == [0]
    assert not any(alive(pid) for pid in pids)


def test_a_copy_that_exits_by_itself_stops_the_others_and_the_status_says_so(
    tmp_path: Path,
) -> None:
    # The first copy to start fails at once; the other waits for SIGTERM.
    flaky = (
        "import sys, pathlib, os\n"
        "marker = pathlib.Path(sys.argv[1], 'first')\n"
        "try:\n"
        "    marker.touch(exist_ok=False)\n"
        "except FileExistsError:\n"
        f"    exec({CONSUMER!r})\n"
        "else:\n"
        "    sys.exit(3)\n"
    )
    started_at = time.monotonic()
    status = run_several([sys.executable, "-c", flaky, str(tmp_path)], 2, Shutdown())
    assert status == 1
    assert time.monotonic() - started_at < 20
    survivors = [p for p in tmp_path.iterdir() if p.name.isdigit()]
    assert survivors and not any(alive(int(p.name)) for p in survivors)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "relay", "--processes", "2"], "on SQLite the relay runs as one process"),
        (["run", "publish-alerts", "--processes", "2"], "publish-alerts runs as one process"),
        (["run", "ingest", "--processes", "0"], "--processes: expected 1 or more, got 0"),
        (["run", "relay", "--processes", "2", "--share", "1/2"], "give one or the other"),
        (["run", "ingest", "--share", "1/2"], "--share: only the relay shares out offenders"),
        (["run", "relay", "--share", "3/2"], "expected K/N with 1 <= K <= N, got '3/2'"),
        (["run", "relay", "--share", "0/2"], "expected K/N with 1 <= K <= N, got '0/2'"),
        (["run", "relay", "--share", "half"], "expected K/N with 1 <= K <= N, got 'half'"),
    ],
)
def test_only_processes_that_share_their_work_may_run_as_several(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from infra.cli import main

    monkeypatch.setenv("MAPPA_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached
    monkeypatch.delenv("MAPPA_DATABASE_URL", raising=False)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_each_copy_may_be_given_arguments_of_its_own(tmp_path: Path) -> None:
    """As the relay's copies are given their share: `--share 1/2`, `--share 2/2`."""
    # Notes its last argument, then waits for SIGTERM.
    consumer = (
        "import sys, pathlib\n"
        "pathlib.Path(sys.argv[1], 'share-' + sys.argv[-1].replace('/', '-')).touch()\n"
        f"exec({CONSUMER!r})\n"
    )
    shutdown = Shutdown()
    result: list[int] = []
    runner = threading.Thread(
        target=lambda: result.append(
            run_several(
                [sys.executable, "-c", consumer, str(tmp_path)],
                2,
                shutdown,
                lambda n: ["--share", f"{n + 1}/2"],
            )
        )
    )
    runner.start()
    try:
        # Each has noted its pid too: only then does it handle SIGTERM (stopped before,
        # it would be killed by the signal, and the status would say it failed).
        started(tmp_path, 2)
    finally:
        shutdown.request()
    runner.join(timeout=30)
    assert result == [0]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("share-")) == [
        "share-1-2",
        "share-2-2",
    ]
