"""The long-running commands' tuning of CPython's cyclic garbage collector."""

from __future__ import annotations

import gc
import subprocess
import sys

from infra.process import GC_THRESHOLDS


def test_the_mappa_command_collects_cycles_rarely_and_never_walks_its_start_up_objects() -> None:
    probe = (
        "import gc, sys\n"
        "import infra.cli\n"
        "def status(_args, _settings):\n"
        "    print(gc.get_threshold(), gc.get_freeze_count() > 10_000)\n"
        "    return 0\n"
        "infra.cli._schema = status\n"
        "sys.argv = ['mappa', 'schema']\n"
        "raise SystemExit(infra.cli.main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == f"{GC_THRESHOLDS} True"


def test_a_program_embedding_the_command_line_keeps_its_own_collector_settings() -> None:
    from infra.cli import main

    before = gc.get_threshold(), gc.get_freeze_count()
    assert main(["schema"]) == 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
