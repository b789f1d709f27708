"""``mappa serve`` as a real process: it listens on the loopback address by default, answers
with a token issued by ``mappa tokens issue``, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import TrackerFactory, database_url_for_tests
from tests.http_support import seed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_mappa_serve_answers_on_the_loopback_address_and_stops_on_sigterm(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    seed(tracker)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPPA_")}
    env["MAPPA_DATA_DIR"] = str(tracker.settings.data_dir)
    if tracker.settings.database_url:
        env["MAPPA_DATABASE_URL"] = database_url_for_tests()
        env["MAPPA_DATABASE_SCHEMA"] = tracker.settings.database_schema
    mappa = str(Path(sys.executable).with_name("mappa"))
    issued = subprocess.run(
        [mappa, "tokens", "issue", "--role", "unit", "--scope", "WM", "--name", "unit"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    token = issued.stdout.strip()

    port = _free_port()
    server = subprocess.Popen(
        [mappa, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if _get(f"http://127.0.0.1:{port}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mappa serve did not start"
            time.sleep(0.1)

        assert _get(f"http://127.0.0.1:{port}/ready") == (200, '{"status":"ready"}')
        status, body = _get(f"http://127.0.0.1:{port}/areas/WM/caseload", token)
        assert status == 200
        assert json.loads(body)["managed"] == 1
        assert _get(f"http://127.0.0.1:{port}/areas/DUR/caseload", token)[0] == 403
        assert _get(f"http://127.0.0.1:{port}/areas/WM/caseload")[0] == 401
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert token not in stderr
