"""``mappa serve`` as a real process: it listens on the loopback address by default, answers
with a token issued by ``mappa tokens issue``, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.bootstrap import Tracker
from tests.conftest import TrackerFactory, database_url_for_tests, free_port
from tests.http_support import seed


def _get(
    url: str, token: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _environment(tracker: Tracker) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPPA_")}
    env["MAPPA_DATA_DIR"] = str(tracker.settings.data_dir)
    if tracker.settings.database_url:
        env["MAPPA_DATABASE_URL"] = database_url_for_tests()
        env["MAPPA_DATABASE_SCHEMA"] = tracker.settings.database_schema
    return env


MAPPA = str(Path(sys.executable).with_name("mappa"))


@contextmanager
def _serving(env: dict[str, str]) -> Iterator[str]:
    """``mappa serve`` on a free port, started and answering; yields its base URL, and
    stops it with SIGTERM after, checking it exits 0."""
    port = free_port()
    server = subprocess.Popen(
        [MAPPA, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if _get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mappa serve did not start"
            time.sleep(0.1)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr


def test_mappa_serve_answers_on_the_loopback_address_and_stops_on_sigterm(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    seed(tracker)
    env = _environment(tracker)
    issued = subprocess.run(
        [MAPPA, "tokens", "issue", "--role", "unit", "--scope", "WM", "--name", "unit"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    token = issued.stdout.strip()

    with _serving(env) as base:
        assert _get(f"{base}/ready") == (200, '{"status":"ready"}')
        status, body = _get(f"{base}/areas/WM/caseload", token)
        assert status == 200
        assert json.loads(body)["managed"] == 1
        assert _get(f"{base}/areas/DUR/caseload", token)[0] == 403
        assert _get(f"{base}/areas/WM/caseload")[0] == 401


def test_a_forwarded_for_header_does_not_give_a_local_client_a_fresh_rate(
    tracker_factory: TrackerFactory,
) -> None:
    # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told not to: each guess at a
    # token could then claim an address of its own, and the per-address rate never bite.
    env = {**_environment(tracker_factory()), "MAPPA_HTTP_RATE_PER_MINUTE": "3"}
    with _serving(env) as base:
        answers = [
            _get(f"{base}/audit", "mappa_not-a-real-token", {"X-Forwarded-For": f"10.0.0.{n}"})[0]
            for n in range(4)
        ]
    assert answers == [401, 401, 401, 429]
