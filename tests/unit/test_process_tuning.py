"""The long-running commands' tuning of CPython's cyclic garbage collector."""

from __future__ import annotations

import gc
import subprocess
import sys

from infra.process import GC_THRESHOLDS


def run_in_a_fresh_interpreter(probe: str) -> str:
    """What ``probe`` prints, run by a Python of its own (the collector's settings are
    process-wide)."""
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout


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
    out = run_in_a_fresh_interpreter(probe)
    assert out.strip() == f"{GC_THRESHOLDS} True"


def test_a_program_embedding_the_command_line_keeps_its_own_collector_settings() -> None:
    from infra.cli import main

    before = gc.get_threshold(), gc.get_freeze_count()
    assert main(["schema"]) == 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_what_survives_a_young_collection_is_never_walked_again_yet_young_cycles_are_freed() -> (
    None
):
    probe = (
        "import gc\n"
        "from infra.process import tune_garbage_collection\n"
        "tune_garbage_collection()\n"
        "cache = [{'fact': [n]} for n in range(600_000)]  # a warm cache: 1.2M containers\n"
        "freed = [0]\n"
        "class Node:\n"
        "    def __del__(self): freed[0] += 1\n"
        "def cycle():\n"
        "    a, b = Node(), Node(); a.other, b.other = b, a\n"
        "for _ in range(30_000): cycle()  # garbage the moment it is made\n"
        "frozen = gc.get_freeze_count()\n"
        "gc.collect()\n"
        "print(frozen > 1_000_000, len(gc.get_objects(2)) < 10_000)  # what a collection walks\n"
        "print(freed[0] > 59_000)  # of 60,000: at most the cycle alive at a collection\n"
    )
    out = run_in_a_fresh_interpreter(probe)
    assert out.split() == ["True", "True", "True"]
