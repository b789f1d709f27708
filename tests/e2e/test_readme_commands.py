"""The README's first command, verbatim, on a fresh clone: the demo prints all three views.

(The second command, ./scripts/test, is what runs this suite: CI runs it on a clean clone.)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## The two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_the_readme_names_the_demo_and_the_test_command() -> None:
    assert readme_commands() == ["./scripts/demo", "./scripts/test"]
    assert (REPO / ".ci" / "run").read_text().strip().endswith("exec ./scripts/test")


def test_the_demo_runs_on_a_fresh_clone_and_prints_caseload_return_and_alerts(
    tmp_path: Path,
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    demo = readme_commands()[0]
    finished = subprocess.run(
        [demo], cwd=clone, capture_output=True, text=True, timeout=1200, check=False
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    out = finished.stdout
    assert re.search(r"Caseload of WM .*2010-03-31: \d+ offenders managed", out)
    assert "Due for release in the next 90 days" in out
    assert "## SECTION 5" in out and "1st APRIL 2004 - 31st MARCH 2005" in out
    assert re.search(r"\d+ open alert\(s\) for VLO-WM-\d+, oldest first", out)
    assert "rejected" in finished.stdout + finished.stderr  # the invalid lines are reported
